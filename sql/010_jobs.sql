-- Scheduled jobs (ARCHITECTURE §5, core/jobs.c): leases, run history, the
-- per-job scheduling state, and the cron daemon's heartbeat.

-- One row per job while a holder runs it. Taken and renewed in
-- transactions; a row past expires_at may be taken over by anyone.
CREATE TABLE job_leases (
    job TEXT PRIMARY KEY,
    period TEXT NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- One row per (job, period): the history operators see, and the record of
-- what is done. status: running (a holder has it, or died with it),
-- ok, failed (retried at next_attempt_at), dead (gave up; staff can force
-- a retry), waiting (cannot run yet, e.g. no pool payout recorded).
CREATE TABLE job_runs (
    id INTEGER PRIMARY KEY,
    job TEXT NOT NULL,
    period TEXT NOT NULL,
    period_start BIGINT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'dead', 'waiting')),
    attempts INTEGER NOT NULL DEFAULT 0,   -- starts
    failures INTEGER NOT NULL DEFAULT 0,   -- failed attempts (dead at the job's maximum)
    items BIGINT NOT NULL DEFAULT 0,
    holder TEXT,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    next_attempt_at BIGINT,
    error TEXT,
    UNIQUE (job, period)
);
CREATE INDEX job_runs_by_job ON job_runs (job, period_start);
CREATE INDEX job_runs_pending ON job_runs (job, status, next_attempt_at);

-- Scheduling state per job: the next hourly period to process (catch-up
-- cursor) or the last interval slot run, and a run asked for by staff.
CREATE TABLE job_state (
    job TEXT PRIMARY KEY,
    cursor BIGINT,
    requested_at BIGINT,
    requested_period BIGINT,
    requested_by TEXT
);

-- The cron daemon's sign of life, one row per daemon (holder).
CREATE TABLE cron_heartbeat (
    holder TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    started_at BIGINT NOT NULL,
    beat_at BIGINT NOT NULL
);

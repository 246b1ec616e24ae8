/* The writers' lock of a SQLite database (store/wlock.h): a futex word in
 * a page mapped from `<database>-wlock`, shared by threads and processes.
 * The tests look at the word through their own mapping of the file: its
 * low 32 bits are the holder's pid plus the waiters bit. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <apr_general.h>
#include <apr_strings.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/wlock.h"

#define WAITERS 0x80000000u
#define LONG_WAIT_MS 20000 /* "forever": a test that needs it has failed */

typedef struct {
    apr_pool_t *pool;
    char dir[64];
    const char *db;          /* the database path; the lock is db + "-wlock" */
    volatile uint64_t *word; /* the test's own view of the lock word */
} ctx;

static int setup(void **state)
{
    ctx *c = calloc(1, sizeof(*c));
    int fd;

    apr_pool_create(&c->pool, NULL);
    strcpy(c->dir, "/tmp/dm_wlock_XXXXXX");
    assert_non_null(mkdtemp(c->dir));
    c->db = apr_pstrcat(c->pool, c->dir, "/dm.db", NULL);
    fd = open(apr_pstrcat(c->pool, c->db, "-wlock", NULL), O_RDWR | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 4096), 0);
    c->word = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    assert_true(c->word != MAP_FAILED);
    close(fd);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    ctx *c = *state;

    munmap((void *)c->word, 4096);
    unlink(apr_pstrcat(c->pool, c->db, "-wlock", NULL));
    rmdir(c->dir);
    apr_pool_destroy(c->pool);
    free(c);
    return 0;
}

static uint32_t low_word(const ctx *c)
{
    return (uint32_t)__atomic_load_n(c->word, __ATOMIC_SEQ_CST);
}

static dm_wlock *open_lock(ctx *c)
{
    const char *why = "unset";
    dm_wlock *wl = dm_wlock_open(c->pool, c->db, &why);

    assert_non_null(wl);
    assert_null(why);
    return wl;
}

/* ---- a child process that holds the lock until told to let go ---- */

typedef struct {
    pid_t pid;
    int to_child;   /* write a byte: release and exit */
    int from_child; /* a byte arrives once the child holds the lock */
} holder;

static holder start_holder(ctx *c, int take_lock)
{
    int down[2], up[2];
    holder h;

    assert_int_equal(pipe(down), 0);
    assert_int_equal(pipe(up), 0);
    h.pid = fork();
    assert_true(h.pid >= 0);
    if (h.pid == 0) {
        char b = 'h';
        const char *why;
        dm_wlock *wl;
        unsigned who = 0;

        close(down[1]);
        close(up[0]);
        if (take_lock) {
            wl = dm_wlock_open(c->pool, c->db, &why);
            if (!wl || !dm_wlock_acquire(wl, LONG_WAIT_MS, &who)) {
                _exit(2);
            }
        }
        if (write(up[1], &b, 1) != 1 || read(down[0], &b, 1) != 1) {
            _exit(3);
        }
        if (take_lock) {
            dm_wlock_release(wl);
        }
        _exit(0);
    }
    close(down[0]);
    close(up[1]);
    h.to_child = down[1];
    h.from_child = up[0];
    {
        char b;
        assert_int_equal(read(h.from_child, &b, 1), 1);
    }
    return h;
}

static void finish_holder(holder *h)
{
    char b = 'r';
    int status = -1;

    assert_int_equal(write(h->to_child, &b, 1), 1);
    assert_int_equal(waitpid(h->pid, &status, 0), h->pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(h->to_child);
    close(h->from_child);
}

/* ---- opening ---- */

static void test_memory_and_uri_databases_have_no_lock_and_no_complaint(void **state)
{
    ctx *c = *state;
    const char *names[] = {"", ":memory:", "file:x.db?mode=memory"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        const char *why = "unset";
        assert_null(dm_wlock_open(c->pool, names[i], &why));
        assert_null(why);
    }
    {
        const char *why = "unset";
        assert_null(dm_wlock_open(c->pool, NULL, &why));
        assert_null(why);
    }
}

static void test_a_lock_file_that_cannot_be_opened_is_named_as_the_reason(void **state)
{
    ctx *c = *state;
    const char *why = NULL;

    assert_null(dm_wlock_open(c->pool, apr_pstrcat(c->pool, c->dir, "/no/such/dm.db", NULL), &why));
    assert_string_equal(why, "cannot open the lock file");
}

static void test_a_new_lock_file_is_private_and_one_page(void **state)
{
    ctx *c = *state;
    const char *db = apr_pstrcat(c->pool, c->dir, "/other.db", NULL);
    const char *lf = apr_pstrcat(c->pool, db, "-wlock", NULL);
    const char *why = "unset";
    struct stat st;
    unsigned who = 0;
    dm_wlock *wl;

    wl = dm_wlock_open(c->pool, db, &why);
    assert_non_null(wl);
    assert_null(why);
    assert_int_equal(stat(lf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, 4096);
    /* all zeros: free */
    assert_int_equal(dm_wlock_acquire(wl, 0, &who), 1);
    dm_wlock_release(wl);
    dm_wlock_close(wl);
    dm_wlock_close(wl); /* twice: harmless */
    dm_wlock_close(NULL);
    unlink(lf);
}

/* ---- one process ---- */

static void test_a_free_lock_is_taken_and_a_held_one_names_its_holder(void **state)
{
    ctx *c = *state;
    dm_wlock *a = open_lock(c), *b = open_lock(c);
    unsigned who = 0;

    assert_int_equal(dm_wlock_acquire(a, 0, &who), 1);
    assert_int_equal(low_word(c), (uint32_t)getpid());
    /* a second handle on the same file (another connection) waits */
    assert_int_equal(dm_wlock_acquire(b, 0, &who), 0);
    assert_int_equal(who, (unsigned)getpid());
    assert_int_equal(dm_wlock_acquire(b, 30, &who), 0);
    assert_int_equal(who, (unsigned)getpid());
    dm_wlock_release(a);
    assert_int_equal(low_word(c), 0);
    assert_int_equal(dm_wlock_acquire(b, 0, &who), 1);
    dm_wlock_release(b);
    assert_int_equal(low_word(c), 0);
    dm_wlock_close(a);
    dm_wlock_close(b);
}

/* Apache's threads share one pid: the word cannot tell them apart, the
 * lock must still let one in at a time. The counter is bumped in two
 * steps with a yield between; any overlap loses an increment. */
typedef struct {
    ctx *c;
    volatile long *counter;
    int rounds;
    int failures;
} worker_arg;

static void bump_under_lock(dm_wlock *wl, volatile long *counter, int rounds, int *failures)
{
    unsigned who;

    for (int i = 0; i < rounds; i++) {
        long v;
        if (!dm_wlock_acquire(wl, LONG_WAIT_MS, &who)) {
            (*failures)++;
            continue;
        }
        v = *counter;
        sched_yield();
        *counter = v + 1;
        dm_wlock_release(wl);
    }
}

static void *thread_worker(void *data)
{
    worker_arg *w = data;
    dm_wlock *wl = open_lock(w->c);

    bump_under_lock(wl, w->counter, w->rounds, &w->failures);
    dm_wlock_close(wl);
    return NULL;
}

static void test_threads_of_one_process_take_turns(void **state)
{
    ctx *c = *state;
    static volatile long counter;
    worker_arg args[6];
    pthread_t th[6];

    counter = 0;
    for (int i = 0; i < 6; i++) {
        args[i] = (worker_arg){c, &counter, 2000, 0};
        assert_int_equal(pthread_create(&th[i], NULL, thread_worker, &args[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(args[i].failures, 0);
    }
    assert_int_equal(counter, 6 * 2000);
    assert_int_equal(low_word(c), 0);
}

/* ---- several processes ---- */

static void test_processes_take_turns(void **state)
{
    ctx *c = *state;
    volatile long *counter =
        mmap(NULL, sizeof(long), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    pid_t kids[4];

    assert_true(counter != MAP_FAILED);
    *counter = 0;
    for (int i = 0; i < 4; i++) {
        kids[i] = fork();
        assert_true(kids[i] >= 0);
        if (kids[i] == 0) {
            const char *why;
            dm_wlock *wl = dm_wlock_open(c->pool, c->db, &why);
            int failures = 0;
            if (!wl) {
                _exit(2);
            }
            bump_under_lock(wl, counter, 1000, &failures);
            _exit(failures ? 3 : 0);
        }
    }
    {
        dm_wlock *wl = open_lock(c);
        int failures = 0;
        bump_under_lock(wl, counter, 1000, &failures);
        assert_int_equal(failures, 0);
        dm_wlock_close(wl);
    }
    for (int i = 0; i < 4; i++) {
        int status = -1;
        assert_int_equal(waitpid(kids[i], &status, 0), kids[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(*counter, 5 * 1000);
    assert_int_equal(low_word(c), 0);
    munmap((void *)counter, sizeof(long));
}

static void test_a_wait_that_times_out_names_the_holding_process(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 1);
    dm_wlock *wl = open_lock(c);
    unsigned who = 0;

    assert_int_equal(low_word(c) & ~WAITERS, (uint32_t)h.pid);
    assert_int_equal(dm_wlock_acquire(wl, 0, &who), 0);
    assert_int_equal(who, (unsigned)h.pid);
    assert_int_equal(dm_wlock_acquire(wl, 50, &who), 0);
    assert_int_equal(who, (unsigned)h.pid);
    finish_holder(&h);
    assert_int_equal(low_word(c), 0);
    assert_int_equal(dm_wlock_acquire(wl, 0, &who), 1);
    dm_wlock_release(wl);
    dm_wlock_close(wl);
}

typedef struct {
    dm_wlock *wl;
    int got;
} waiter_arg;

static void *waiter(void *data)
{
    waiter_arg *w = data;
    unsigned who;

    w->got = dm_wlock_acquire(w->wl, LONG_WAIT_MS, &who);
    return NULL;
}

static void wait_for_sleeper(ctx *c)
{
    while (!(low_word(c) & WAITERS)) {
        usleep(1000);
    }
}

static void test_a_sleeper_sets_the_waiters_bit_and_gets_the_lock_on_release(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 1);
    waiter_arg w = {open_lock(c), -1};
    pthread_t th;

    assert_int_equal(pthread_create(&th, NULL, waiter, &w), 0);
    wait_for_sleeper(c);
    assert_int_equal(low_word(c), (uint32_t)h.pid | WAITERS);
    finish_holder(&h);
    pthread_join(th, NULL);
    assert_int_equal(w.got, 1);
    /* a woken sleeper takes the lock with the bit set: others may sleep */
    assert_int_equal(low_word(c), (uint32_t)getpid() | WAITERS);
    dm_wlock_release(w.wl);
    assert_int_equal(low_word(c), 0);
    dm_wlock_close(w.wl);
}

/* ---- a holder that is gone ---- */

/* Opens a handle and waits "forever": the lock is taken over, and the
 * word names this process. */
static void assert_taken_over(ctx *c)
{
    dm_wlock *wl = open_lock(c);
    unsigned who = 0;

    assert_int_equal(dm_wlock_acquire(wl, LONG_WAIT_MS, &who), 1);
    assert_int_equal(low_word(c) & ~WAITERS, (uint32_t)getpid());
    dm_wlock_release(wl);
    assert_int_equal(low_word(c), 0);
    dm_wlock_close(wl);
}

static void test_the_lock_of_a_killed_holder_is_taken_over(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 1);
    int status;

    kill(h.pid, SIGKILL);
    assert_int_equal(waitpid(h.pid, &status, 0), h.pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(low_word(c) & ~WAITERS, (uint32_t)h.pid);
    assert_taken_over(c);
    close(h.to_child);
    close(h.from_child);
}

/* Between its death and its parent's wait a process is a zombie: it
 * holds nothing, though kill(pid, 0) still finds it. */
static void test_the_lock_of_a_killed_holder_not_yet_reaped_is_taken_over(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 1);
    siginfo_t si;
    int status;

    kill(h.pid, SIGKILL);
    memset(&si, 0, sizeof(si));
    assert_int_equal(waitid(P_PID, (id_t)h.pid, &si, WEXITED | WNOWAIT), 0);
    assert_int_equal(kill(h.pid, 0), 0); /* still there, as a zombie */
    assert_taken_over(c);
    assert_int_equal(waitpid(h.pid, &status, 0), h.pid);
    close(h.to_child);
    close(h.from_child);
}

/* The file outlives its processes (a restart of the machine or of a
 * container): a word left by a dead holder may name a pid that now
 * belongs to a process that never took the lock. The word also carries
 * the holder's start time, which tells the two apart. */
static void test_a_stale_word_naming_a_reused_pid_is_taken_over(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 0); /* alive, never took the lock */

    /* the pid of the live process, the start time of another one */
    __atomic_store_n(c->word, ((uint64_t)1 << 32) | (uint32_t)h.pid, __ATOMIC_SEQ_CST);
    assert_taken_over(c);
    finish_holder(&h);
}

/* ...also when the pid is this process's own (the new Apache child got
 * the number of the one that died): not another thread of this process. */
static void test_a_stale_word_naming_this_pid_is_taken_over(void **state)
{
    ctx *c = *state;

    __atomic_store_n(c->word, ((uint64_t)1 << 32) | (uint32_t)getpid(), __ATOMIC_SEQ_CST);
    assert_taken_over(c);
}

/* ...while a live holder is never taken over, however long it holds. */
static void test_a_live_holder_keeps_the_lock_past_many_checks(void **state)
{
    ctx *c = *state;
    holder h = start_holder(c, 1);
    dm_wlock *wl = open_lock(c);
    unsigned who = 0;

    /* each 100 ms sleep ends in a check of the holder: several here */
    assert_int_equal(dm_wlock_acquire(wl, 450, &who), 0);
    assert_int_equal(who, (unsigned)h.pid);
    assert_int_equal(low_word(c) & ~WAITERS, (uint32_t)h.pid);
    finish_holder(&h);
    assert_int_equal(dm_wlock_acquire(wl, 0, &who), 1);
    dm_wlock_release(wl);
    dm_wlock_close(wl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_and_uri_databases_have_no_lock_and_no_complaint,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_a_lock_file_that_cannot_be_opened_is_named_as_the_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_new_lock_file_is_private_and_one_page, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_free_lock_is_taken_and_a_held_one_names_its_holder,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_of_one_process_take_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_processes_take_turns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_wait_that_times_out_names_the_holding_process, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_a_sleeper_sets_the_waiters_bit_and_gets_the_lock_on_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_lock_of_a_killed_holder_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_the_lock_of_a_killed_holder_not_yet_reaped_is_taken_over, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_stale_word_naming_a_reused_pid_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_stale_word_naming_this_pid_is_taken_over, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_live_holder_keeps_the_lock_past_many_checks, setup,
                                        teardown),
    };
    apr_initialize();
    return cmocka_run_group_tests_name("wlock", tests, NULL, NULL);
}

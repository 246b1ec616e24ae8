/*
 * bench.h — dm-benchgen's command functions (members.c, contracts.c);
 * main.c is its table. Bench and test populations only: the generators
 * trade durability for speed (dm_db_bulk_load_mode) on their connection.
 */
#ifndef DM_BENCH_H
#define DM_BENCH_H

#include "../cli.h"

int dm_bench_members(dm_cli *c);
int dm_bench_contracts(dm_cli *c);

#endif

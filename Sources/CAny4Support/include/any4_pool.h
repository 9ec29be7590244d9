// The persistent worker pool (pool.c) for fine-grained parallel loops: a decode step makes a few
// hundred parallel calls of 10-100 µs each; waking a sleeping thread for each costs 30-40 µs.
#ifndef ANY4_POOL_H
#define ANY4_POOL_H

#ifdef __cplusplus
extern "C" {
#endif

/// A task of a parallel loop: runs task `index` of a job whose state is `ctx`.
typedef void (*any4_task_fn)(void *ctx, int index);

/// Runs fn(ctx, i) for i in [0, tasks) on the calling thread and the persistent pool's workers
/// (one per extra core; they spin briefly between jobs, then sleep). Returns 1 when done, or 0
/// without running anything if another thread's job holds the pool (the caller then runs the
/// loop another way).
int any4_pool_run(int tasks, any4_task_fn fn, void *ctx);

/// The pool's worker threads (cores − 1).
int any4_pool_workers(void);

#ifdef __cplusplus
}
#endif

#endif

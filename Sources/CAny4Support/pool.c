// A small persistent worker pool for fine-grained parallel loops (a decode step makes a few
// hundred parallel calls of 10-100 µs each; waking a sleeping thread for each costs 30-40 µs).
// Workers spin for a short, bounded while after each job (the gap between two kernels of a decode
// step is mostly shorter), then sleep in the kernel -- a futex on Linux, a condition variable
// elsewhere -- so an idle pool burns no core that the caller or another process needs.
#include "any4_pool.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#define ANY4_FUTEX 1
#else
#define ANY4_FUTEX 0
#endif

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CPU_RELAX() _mm_pause()
#else
#define CPU_RELAX() ((void)0)
#endif

#define MAX_WORKERS 63
// How long an idle worker spins before it sleeps. Long enough to span the serial work between two
// parallel loops of a decode step (norms, RoPE, attention of a small model: tens of µs), short
// enough that a pool left idle gives its core back at once (it spun 300 µs after every job before).
#define SPIN_NS 60000

static struct {
    pthread_once_t once;
    int workers;                        // pool threads (the caller is one more participant)
    atomic_flag busy;                   // one job at a time; a second caller gets 0 and runs it itself
    unsigned job;                       // the last job's number (written only while busy is held)
    // (job << 32) | next task index: claiming a task is a compare-and-swap on this word, so a
    // worker still looking at an old job can never take (or lose) a task of the new one.
    _Atomic unsigned long long claim;
    // (job << 32) | task count. The count carries its job so that a worker that has just finished
    // job J and reads the count while job J+1 is being set up cannot hold J's claim word against
    // J+1's (larger) count: that claimed task J.T(J) -- a task that does not exist -- and ran it
    // with J+1's function, twice over one of J+1's tasks, and left `remaining` one short, so the
    // caller could return while a task still ran (scripts/tsan-stress.sh, ConcurrencyTests).
    _Atomic unsigned long long bound;
    _Atomic any4_task_fn fn;
    _Atomic(void *) ctx;
    atomic_int remaining;               // tasks of the current job not yet finished
    atomic_int sleepers;
    // Bumped after each job is announced: a sleeping worker waits on it (futex) with the value it
    // read before its last look at the job, so an announcement between the look and the wait
    // makes the wait return at once.
    _Atomic unsigned wake_seq;
    pthread_mutex_t lock;
    pthread_cond_t wake;
} pool = {.once = PTHREAD_ONCE_INIT, .busy = ATOMIC_FLAG_INIT};

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static unsigned current_job(void) { return (unsigned)(atomic_load(&pool.claim) >> 32); }

/// Claims and runs tasks of `job` until none is left (or another job has started).
static void run_job(unsigned job) {
    for (;;) {
        unsigned long long v = atomic_load_explicit(&pool.claim, memory_order_acquire);
        for (;;) {
            if ((unsigned)(v >> 32) != job) return;
            // Job J's count, or nothing: J+1 cannot be announced while a task of J is unclaimed,
            // and a claim word that shows J comes after J's count in memory order.
            const unsigned long long b = atomic_load_explicit(&pool.bound, memory_order_acquire);
            if ((unsigned)(b >> 32) != job || (v & 0xffffffffu) >= (b & 0xffffffffu)) return;
            if (atomic_compare_exchange_weak_explicit(&pool.claim, &v, v + 1, memory_order_acq_rel, memory_order_acquire))
                break;
        }
        // The task is ours and the job stays current until it is finished.
        any4_task_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
        fn(atomic_load_explicit(&pool.ctx, memory_order_relaxed), (int)(v & 0xffffffffu));
        atomic_fetch_sub_explicit(&pool.remaining, 1, memory_order_release);
    }
}

/// Sleeps until a job after `seen` is announced. Every step is sequentially consistent: a worker
/// counts itself a sleeper, reads wake_seq, then looks at the job; the caller announces the job,
/// bumps wake_seq, then reads the sleepers. Either the caller sees the sleeper (and wakes it: a
/// futex wait on a value that has changed since it was read returns at once), or the worker's
/// look comes after the announcement and it does not wait.
static void worker_sleep(unsigned seen) {
    atomic_fetch_add(&pool.sleepers, 1);
#if ANY4_FUTEX
    for (;;) {
        const unsigned w = atomic_load(&pool.wake_seq);
        if (current_job() != seen) break;
        syscall(SYS_futex, (unsigned *)&pool.wake_seq, FUTEX_WAIT_PRIVATE, w, NULL, NULL, 0);
    }
#else
    pthread_mutex_lock(&pool.lock);
    while (current_job() == seen) pthread_cond_wait(&pool.wake, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
#endif
    atomic_fetch_sub(&pool.sleepers, 1);
}

static void *worker_main(void *arg) {
    (void)arg;
    unsigned seen = current_job();
    for (;;) {
        // Spin for a new job, then sleep until one is announced.
        const long long until = now_ns() + SPIN_NS;
        int spins = 0;
        while (current_job() == seen) {
            CPU_RELAX();
            if (++spins % 64 == 0 && now_ns() > until) {
                worker_sleep(seen);
                break;
            }
        }
        seen = current_job();
        run_job(seen);
    }
    return NULL;
}

static void pool_start(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    int w = (int)(n > 1 ? n - 1 : 0);
    if (w > MAX_WORKERS) w = MAX_WORKERS;
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    atomic_init(&pool.claim, 0);
    atomic_init(&pool.bound, 0);
    atomic_init(&pool.sleepers, 0);
    atomic_init(&pool.wake_seq, 0);
    // Workers never take asynchronous signals: they start with every signal blocked. The CLI turns
    // SIGINT, SIGTERM and SIGHUP into a cancellation (ignored disposition + Dispatch signal
    // sources, which see only what is blocked where it is delivered); a worker started before that
    // and not blocking them could be the thread the kernel picks, and the signal was lost (a
    // SIGHUP during a write left a complete output and status 0, about once in a few CI runs).
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int started = 0;
    for (int i = 0; i < w; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, worker_main, NULL) == 0) started++;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pool.workers = started;
}

int any4_pool_workers(void) {
    pthread_once(&pool.once, pool_start);
    return pool.workers;
}

int any4_pool_run(int tasks, any4_task_fn fn, void *ctx) {
    if (tasks <= 0) return 1;
    pthread_once(&pool.once, pool_start);
    if (tasks == 1 || pool.workers == 0) {
        for (int i = 0; i < tasks; i++) fn(ctx, i);
        return 1;
    }
    if (atomic_flag_test_and_set_explicit(&pool.busy, memory_order_acquire)) return 0;
    const unsigned job = ++pool.job;
    atomic_store_explicit(&pool.bound, ((unsigned long long)job << 32) | (unsigned)tasks, memory_order_relaxed);
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.remaining, tasks, memory_order_relaxed);
    atomic_store(&pool.claim, (unsigned long long)job << 32);  // publishes the fields above
    atomic_fetch_add(&pool.wake_seq, 1);
    if (atomic_load(&pool.sleepers) > 0) {
#if ANY4_FUTEX
        syscall(SYS_futex, (unsigned *)&pool.wake_seq, FUTEX_WAKE_PRIVATE, MAX_WORKERS, NULL, NULL, 0);
#else
        pthread_mutex_lock(&pool.lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.lock);
#endif
    }
    run_job(job);
    while (atomic_load_explicit(&pool.remaining, memory_order_acquire) > 0) CPU_RELAX();
    atomic_flag_clear_explicit(&pool.busy, memory_order_release);
    return 1;
}

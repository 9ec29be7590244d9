// SIGBUS on a mapped file that shrank: see any4_mapguard.h.
#include "any4_mapguard.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 1024      // mappings guarded at once (a model of 1024 shards and more is unguarded past that)
#define NAME_BYTES 1024 // longer names are cut (the message then ends the name with "...")

static struct {
    _Atomic uintptr_t base;  // 0: free
    size_t size;
    char name[NAME_BYTES];
} slots[SLOTS];

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static struct sigaction previous;

static void put(const char *text, size_t length) {
    while (length > 0) {
        ssize_t n = write(2, text, length);
        if (n <= 0) return;
        text += n;
        length -= (size_t)n;
    }
}

static void put_string(const char *text) { put(text, strlen(text)); }

static void put_unsigned(size_t value) {
    char digits[24];
    int i = sizeof digits;
    do {
        digits[--i] = (char)('0' + value % 10);
        value /= 10;
    } while (value > 0 && i > 0);
    put(digits + i, sizeof digits - (size_t)i);
}

static void on_sigbus(int sig, siginfo_t *info, void *context) {
    uintptr_t address = (uintptr_t)info->si_addr;
    for (int i = 0; i < SLOTS; i++) {
        uintptr_t base = atomic_load_explicit(&slots[i].base, memory_order_acquire);
        if (base == 0 || address < base || address - base >= slots[i].size) continue;
        put_string("any4: error: ");
        put(slots[i].name, strnlen(slots[i].name, NAME_BYTES));
        put_string(": the file shrank while being read (mapped region at offset ");
        put_unsigned(address - base);
        put_string(" is gone)\n");
        _exit(2);
    }
    // Not one of ours: whoever handled SIGBUS before us, else the default action (the faulting
    // access runs again on return and the signal kills the process).
    if ((previous.sa_flags & SA_SIGINFO) && previous.sa_sigaction != NULL) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN && previous.sa_handler != NULL) {
        previous.sa_handler(sig);
    } else {
        struct sigaction fallback;
        memset(&fallback, 0, sizeof fallback);
        fallback.sa_handler = SIG_DFL;
        sigemptyset(&fallback.sa_mask);
        sigaction(SIGBUS, &fallback, NULL);
    }
}

static void install(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_sigbus;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    sigaction(SIGBUS, &action, &previous);
}

int any4_mapguard_register(const void *base, size_t size, const char *name) {
    if (base == NULL || size == 0) return -1;
    pthread_once(&once, install);
    pthread_mutex_lock(&lock);
    int found = -1;
    for (int i = 0; i < SLOTS; i++) {
        if (atomic_load_explicit(&slots[i].base, memory_order_relaxed) == 0) { found = i; break; }
    }
    if (found >= 0) {
        size_t length = strlen(name);
        if (length >= NAME_BYTES) {
            memcpy(slots[found].name, name, NAME_BYTES - 4);
            memcpy(slots[found].name + NAME_BYTES - 4, "...", 4);
        } else {
            memcpy(slots[found].name, name, length + 1);
        }
        slots[found].size = size;
        atomic_store_explicit(&slots[found].base, (uintptr_t)base, memory_order_release);
    }
    pthread_mutex_unlock(&lock);
    return found;
}

void any4_mapguard_unregister(int slot) {
    if (slot < 0 || slot >= SLOTS) return;
    pthread_mutex_lock(&lock);
    atomic_store_explicit(&slots[slot].base, 0, memory_order_release);
    pthread_mutex_unlock(&lock);
}

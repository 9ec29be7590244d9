// Memory-mapped model files that shrink while they are read.
//
// A read of a page of a mapping whose file was truncated under it raises SIGBUS, which would kill
// the process without a word. The readers register each mapping here (base, size, file name); a
// SIGBUS handler, installed with the first registration, checks whether the faulting address lies
// in a registered mapping and then writes, async-signal-safely,
//   any4: error: FILE: the file shrank while being read (mapped region at offset N is gone)
// to standard error and ends the process with _exit(2). A SIGBUS elsewhere goes to the handler
// that was installed before (the Swift runtime's backtracer, or the default action).
#ifndef ANY4_MAPGUARD_H
#define ANY4_MAPGUARD_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Registers [base, base + size) as a mapping of `name`; returns its slot (for
/// any4_mapguard_unregister), or -1 when every slot is taken (the mapping is then unguarded).
int any4_mapguard_register(const void *base, size_t size, const char *name);

/// Forgets a slot returned by any4_mapguard_register (before the region is unmapped).
void any4_mapguard_unregister(int slot);

#ifdef __cplusplus
}
#endif

#endif

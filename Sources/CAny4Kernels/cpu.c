// Run-time CPU features: which kernel variant dispatch.c may choose.
#include "kernels_internal.h"

int any4_cpu_has_avx2(void) {
#if ANY4_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, f16c = (c >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;
#else
    return 0;
#endif
}

int any4_cpu_simd_level(void) {
#if ANY4_X86
    if (!any4_cpu_has_avx2()) return 0;
    unsigned a, b, c, d, lo, hi;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 1;
    // AVX-512 F (b16), DQ (b17), BW (b30), VL (b31) and VNNI (c11), with the OS saving the opmask
    // and ZMM state (XCR0 bits 5-7).
    const int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1, vnni = (c >> 11) & 1;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if (!(f && dq && bw && vl && vnni && (lo & 0xE0) == 0xE0)) return 1;
    // VBMI (c1): vpermb, level 3.
    return (c >> 1) & 1 ? 3 : 2;
#else
    return 0;
#endif
}

// C shim over ncursesw for Swift 6.
//
// Swift cannot import function-like macros (COLOR_PAIR, getmaxyx, ACS_*) and treats C globals
// (stdscr, LINES, COLS, COLORS) as shared mutable state under strict concurrency. Every such
// access goes through one of the static inline functions below; Swift never touches them directly.
#ifndef ANY4_CNCURSES_SHIM_H
#define ANY4_CNCURSES_SHIM_H

#ifndef _XOPEN_SOURCE_EXTENDED
#define _XOPEN_SOURCE_EXTENDED 1
#endif
#ifndef NCURSES_WIDECHAR
#define NCURSES_WIDECHAR 1
#endif

#include <locale.h>
#include <signal.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#include <wchar.h>
#if __has_include(<ncursesw/curses.h>)
#include <ncursesw/curses.h>
#else
#include <curses.h>
#endif

static inline WINDOW *any4_stdscr(void) { return stdscr; }
static inline int any4_lines(void) { return LINES; }
static inline int any4_cols(void) { return COLS; }
static inline int any4_colors(void) { return COLORS; }
static inline int any4_color_pairs(void) { return COLOR_PAIRS; }
static inline int any4_color_pair(int n) { return (int)COLOR_PAIR(n); }
static inline int any4_attr_bold(void) { return (int)A_BOLD; }
static inline int any4_attr_reverse(void) { return (int)A_REVERSE; }
static inline int any4_attr_dim(void) { return (int)A_DIM; }
static inline int any4_attr_underline(void) { return (int)A_UNDERLINE; }
static inline int any4_key_resize(void) { return KEY_RESIZE; }
static inline int any4_key_mouse(void) { return KEY_MOUSE; }
static inline int any4_key_up(void) { return KEY_UP; }
static inline int any4_key_down(void) { return KEY_DOWN; }
static inline int any4_key_left(void) { return KEY_LEFT; }
static inline int any4_key_right(void) { return KEY_RIGHT; }
static inline int any4_key_npage(void) { return KEY_NPAGE; }
static inline int any4_key_ppage(void) { return KEY_PPAGE; }
static inline int any4_key_home(void) { return KEY_HOME; }
static inline int any4_key_end(void) { return KEY_END; }
static inline int any4_key_btab(void) { return KEY_BTAB; }
static inline int any4_key_enter(void) { return KEY_ENTER; }
static inline int any4_key_backspace(void) { return KEY_BACKSPACE; }
static inline int any4_key_f(int n) { return KEY_F(n); }

/// Sets the locale from the environment; must run before initscr for UTF-8 output.
static inline void any4_setlocale(void) { setlocale(LC_ALL, ""); }

/// Writes one UTF-8 string at (y, x) with the given attributes, clipped by ncurses to the window.
static inline int any4_put(int y, int x, const char *utf8, int attrs) {
    attrset((attr_t)attrs);
    int rc = mvaddstr(y, x, utf8);
    attrset(A_NORMAL);
    return rc;
}

static inline mmask_t any4_all_mouse_events(void) { return ALL_MOUSE_EVENTS | REPORT_MOUSE_POSITION; }
static inline mmask_t any4_button1_clicked(void) { return BUTTON1_CLICKED | BUTTON1_PRESSED | BUTTON1_RELEASED; }
// Home and End as terminals other than the one TERM names send them (tmux and screen send
// ESC [1~ and ESC [4~ whatever TERM says inside; xterm in one mode or another ESC [H / ESC OH):
// ncurses otherwise hands them over as ESC, [, 4, ~, four keys the UI would act on.
static inline void any4_define_alternate_keys(void) {
    define_key("\033[1~", KEY_HOME);
    define_key("\033[4~", KEY_END);
    define_key("\033[H", KEY_HOME);
    define_key("\033[F", KEY_END);
    define_key("\033OH", KEY_HOME);
    define_key("\033OF", KEY_END);
}
static inline mmask_t any4_button1_pressed(void) { return BUTTON1_CLICKED | BUTTON1_PRESSED; }
static inline mmask_t any4_button4_pressed(void) { return BUTTON4_PRESSED; }
static inline mmask_t any4_button5_pressed(void) { return BUTTON5_PRESSED; }

// MARK: - Crash guard
//
// A fatal signal while the UI holds the terminal would leave it on the alternate screen with the
// cursor hidden, the keypad and mouse in application mode and the tty without echo. The guard
// restores all of that from the signal handler itself, before anything else runs, with what is
// async-signal-safe: write(2) of escape sequences prepared beforehand from terminfo, and
// tcsetattr(3) of the modes saved before initscr (endwin is not safe there: it goes through
// stdio and may allocate). It then hands the signal to the handler that was installed before
// (the Swift runtime's backtracer, which prints the crash on the normal screen) and dies of the
// signal with its default action, so the crash is still reported and the exit status says so.
//
// The state is `static`: every Swift file that called these functions would get its own copy,
// so only CursesApp.swift calls them.

static const int any4_guarded_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGABRT, SIGFPE, SIGTRAP, SIGQUIT};
#define ANY4_GUARDED_COUNT ((int)(sizeof(any4_guarded_signals) / sizeof(any4_guarded_signals[0])))

struct any4_guard_state {
    struct sigaction previous[ANY4_GUARDED_COUNT];
    char restore[512];
    size_t restore_length;
    struct termios modes;
    int has_modes;
    int held;  // 1 while the UI holds the terminal; taken with an atomic exchange
};

/// The guard's state. (A function-local static: Swift emits the bodies of this header's inline
/// functions into the object of the Swift file that calls them, with their local statics, but
/// not file-scope statics.)
static inline struct any4_guard_state *any4_guard(void) {
    static struct any4_guard_state state;
    return &state;
}

/// Saves the terminal modes the shell left (call before initscr).
static inline void any4_guard_save_modes(void) {
    any4_guard()->has_modes = tcgetattr(STDOUT_FILENO, &any4_guard()->modes) == 0;
}

static inline void any4_guard_append(const char *text) {
    if (text == NULL || text == (const char *)-1) return;  // absent, or not a string capability
    struct any4_guard_state *g = any4_guard();
    size_t n = strlen(text);
    if (g->restore_length + n >= sizeof(g->restore)) return;
    memcpy(g->restore + g->restore_length, text, n);
    g->restore_length += n;
}

static void any4_guard_handler(int signum, siginfo_t *info, void *context) {
    struct any4_guard_state *g = any4_guard();
    if (__atomic_exchange_n(&g->held, 0, __ATOMIC_ACQ_REL)) {
        const char *p = g->restore;
        size_t left = g->restore_length;
        while (left > 0) {
            ssize_t n = write(STDOUT_FILENO, p, left);
            if (n <= 0) break;
            p += n;
            left -= (size_t)n;
        }
        if (g->has_modes) tcsetattr(STDOUT_FILENO, TCSANOW, &g->modes);
    }
    for (int i = 0; i < ANY4_GUARDED_COUNT; i++) {
        if (any4_guarded_signals[i] != signum) continue;
        const struct sigaction *previous = &g->previous[i];
        sigaction(signum, previous, NULL);
        if (previous->sa_flags & SA_SIGINFO) {
            if (previous->sa_sigaction != NULL) previous->sa_sigaction(signum, info, context);
        } else if (previous->sa_handler != SIG_DFL && previous->sa_handler != SIG_IGN) {
            previous->sa_handler(signum);
        }
    }
    struct sigaction fallback;
    memset(&fallback, 0, sizeof fallback);
    fallback.sa_handler = SIG_DFL;
    sigemptyset(&fallback.sa_mask);
    sigaction(signum, &fallback, NULL);
    raise(signum);  // SA_NODEFER: delivered now, with the default action
}

/// Prepares the restoring sequence from terminfo and installs the handler (call after initscr
/// and the mode changes: keypad, mouse).
static inline void any4_guard_install(void) {
    struct any4_guard_state *g = any4_guard();
    g->restore_length = 0;
    any4_guard_append(tigetstr("rmcup"));  // leave the alternate screen
    any4_guard_append(tigetstr("cnorm"));  // show the cursor
    any4_guard_append(tigetstr("sgr0"));   // plain attributes
    any4_guard_append(tigetstr("rmkx"));   // keypad back to normal mode
    const char *mouse = tigetstr("kmous");
    if (mouse != NULL && mouse != (const char *)-1) {
        // ncurses turned on xterm mouse reporting (clicks, motion, SGR encoding): turn it off.
        any4_guard_append("\033[?1006l\033[?1003l\033[?1002l\033[?1000l");
    }
    // The Swift runtime's own handler runs this way too: on the alternate stack, not blocked
    // within itself, every signal but the fatal ones held off while it runs.
    struct sigaction action;
    memset(&action, 0, sizeof action);
    sigfillset(&action.sa_mask);
    for (int i = 0; i < ANY4_GUARDED_COUNT; i++) sigdelset(&action.sa_mask, any4_guarded_signals[i]);
    action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    action.sa_sigaction = any4_guard_handler;
    for (int i = 0; i < ANY4_GUARDED_COUNT; i++) sigaction(any4_guarded_signals[i], &action, &g->previous[i]);
    __atomic_store_n(&g->held, 1, __ATOMIC_RELEASE);
}

/// The UI is giving the terminal back (before endwin): the previous handlers return.
static inline void any4_guard_release(void) {
    struct any4_guard_state *g = any4_guard();
    __atomic_store_n(&g->held, 0, __ATOMIC_RELEASE);
    for (int i = 0; i < ANY4_GUARDED_COUNT; i++) sigaction(any4_guarded_signals[i], &g->previous[i], NULL);
}

#endif

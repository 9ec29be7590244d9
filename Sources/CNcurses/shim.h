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
static inline mmask_t any4_button4_pressed(void) { return BUTTON4_PRESSED; }
static inline mmask_t any4_button5_pressed(void) { return BUTTON5_PRESSED; }

#endif

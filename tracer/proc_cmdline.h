/* A process's command line from /proc, for the trace's metadata and for
 * the CLI's listings (shared by the library and the CLI: libmsvcore). */
#ifndef MSV_PROC_CMDLINE_H
#define MSV_PROC_CMDLINE_H

#include <stddef.h>

/* The command line of process pid (0: this process) into buf: arguments
 * separated by spaces, trailing spaces dropped, cut to len - 1 bytes.
 * Returns its length; 0 (buf "") when it cannot be read. */
size_t _msv_proc_cmdline(int pid, char *buf, size_t len);

#endif

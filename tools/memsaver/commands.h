/* The memsaver CLI: one function per sub-command, each taking the arguments
 * after the sub-command name (argv[0] is the sub-command) and returning the
 * process exit status.  main.c dispatches; each cmd_*.c owns its --help. */
#ifndef MSV_COMMANDS_H
#define MSV_COMMANDS_H

int _msv_cmd_run(int argc, char **argv);     /* cmd_run.c */
int _msv_cmd_ctl(int argc, char **argv);     /* cmd_ctl.c */
int _msv_cmd_analyze(int argc, char **argv); /* cmd_analyze.c */
int _msv_cmd_report(int argc, char **argv);  /* cmd_report.c */
int _msv_cmd_diff(int argc, char **argv);    /* cmd_diff.c */
int _msv_cmd_policy(int argc, char **argv);  /* cmd_policy.c */
int _msv_cmd_attach(int argc, char **argv);  /* cmd_attach.c */

/* Print a command's usage text: all of it to stdout (--help), or its
 * first paragraph plus "Try 'memsaver CMD --help'." elsewhere (a usage
 * error).  Returns rc.  usage.c. */
#include <stdio.h>
int _msv_usage(FILE *f, const char *text, const char *cmd, int rc);

/* Exit statuses shared by every command. */
#define MSV_EXIT_OK 0
#define MSV_EXIT_FAIL 1  /* the operation failed */
#define MSV_EXIT_USAGE 2 /* bad command line or bad input file */

#endif

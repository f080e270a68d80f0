/* memsaver: the command a person types.  Dispatches to one cmd_*.c per
 * sub-command; none of them needs a GPU except `run`. */
#include <stdio.h>
#include <string.h>

#include "tools/memsaver/commands.h"

static const char usage[] =
	"usage: memsaver [--version] [--help] COMMAND [ARGS]\n"
	"\n"
	"Release the GPU memory of an unmodified CUDA engine and take it back at the\n"
	"same addresses, and explain what stays resident.\n"
	"\n"
	"Commands:\n"
	"  run      start an engine with memsaver attached (tracer + saver)\n"
	"  ctl      pause, resume, snapshot, status, report of running engines\n"
	"  analyze  build the attribution report from traces (--dump: JSON Lines)\n"
	"  report   show a report as a table, HTML page or Perfetto trace\n"
	"  diff     compare two reports source by source\n"
	"  policy   check a policy file, or show the built-in one\n"
	"  attach   observe a running engine started without memsaver (BPF, root)\n"
	"\n"
	"`memsaver COMMAND --help` tells more.  Example:\n"
	"  memsaver run -p tools/policies/default.json -o report.json -- python -m engine\n"
	"  memsaver ctl pause && memsaver ctl resume\n"
	"  memsaver report report.json\n";

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int, char **);
	} cmds[] = {
		{"run", _msv_cmd_run},         {"ctl", _msv_cmd_ctl},   {"analyze", _msv_cmd_analyze},
		{"report", _msv_cmd_report},   {"diff", _msv_cmd_diff}, {"policy", _msv_cmd_policy},
		{"attach", _msv_cmd_attach},
	};
	if (argc < 2) {
		fputs(usage, stderr);
		return MSV_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
		fputs(usage, stdout);
		return MSV_EXIT_OK;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0) {
		printf("memsaver %s\n", MSV_VERSION_STR);
		return MSV_EXIT_OK;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "memsaver: unknown command \"%s\"\n\n%s", argv[1], usage);
	return MSV_EXIT_USAGE;
}

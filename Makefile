# memsaver — build out of tree into $(BUILD).  `make help` lists the targets.
# Quiet unless V=1.  CUDA headers from CUDA_HOME; nothing links libcuda at
# build time (the library and the demo reach the driver through dlopen).

CUDA_HOME ?= /usr/local/cuda
BUILD ?= build
PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
VERSION := 0.1.0

ifeq ($(V),1)
Q :=
else
Q := @
endif

WARN := -Wall -Wextra -Werror -Wno-missing-field-initializers
CFLAGS ?= -O2 -g
CPPFLAGS += -Iinclude -I. -I$(CUDA_HOME)/include -D_GNU_SOURCE -DMSV_VERSION_STR=\"$(VERSION)\"
ALL_CFLAGS = -std=gnu11 -fPIC -fvisibility=hidden $(WARN) $(CFLAGS) $(SAN)
# Debian's libjansson.a is not position-independent, so the library links
# libjansson.so.4 (present on the GPU machine too; one soname, one ABI).
LDLIBS_CORE = -ljansson -lpthread -ldl -lm

# Everything that needs no CUDA: linked into the library, the CLI and the
# unit tests alike.
CORE_SRCS := \
	$(wildcard analyzer/*.c) \
	tracer/categories.c \
	tracer/classify.c \
	tracer/log.c \
	tracer/options.c \
	tracer/policy.c \
	tracer/proc_cmdline.c \
	tracer/trace_writer.c \
	saver/control_path.c \
	saver/state.c

LIB_SRCS := $(sort $(wildcard tracer/*.c saver/*.c) $(CORE_SRCS))
CLI_SRCS := $(wildcard tools/memsaver/*.c)
DEMO_SRCS := $(wildcard tools/demo/*.c)
FAKE_DRIVER_SRCS := $(wildcard tests/fakecuda/driver*.c)
FAKE_CUPTI_SRCS := $(wildcard tests/fakecuda/cupti*.c)
FAKE_NVML_SRCS := $(wildcard tests/fakecuda/nvml*.c)
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
FAKE_TEST_SRCS := $(wildcard tests/fakecuda/test_*.c)
PRELOAD_TEST_SRCS := $(wildcard tests/preload/test_*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB := $(BUILD)/lib/libmemsaver.so
CORE := $(BUILD)/lib/libmsvcore.a
CLI := $(BUILD)/bin/memsaver
DEMO := $(BUILD)/bin/demo-engine
FAKE_DRIVER := $(BUILD)/fakecuda/libcuda.so.1
FAKE_CUPTI := $(BUILD)/fakecuda/libcupti.so.13
FAKE_NVML := $(BUILD)/fakecuda/libnvidia-ml.so.1
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FAKE_TEST_BINS := $(patsubst tests/fakecuda/%.c,$(BUILD)/tests/fakecuda_%,$(FAKE_TEST_SRCS))
PRELOAD_TEST_BINS := $(patsubst tests/preload/%.c,$(BUILD)/tests/preload_%,$(PRELOAD_TEST_SRCS))
BENCH_BINS := $(patsubst bench/%.c,$(BUILD)/bin/bench-%,$(wildcard bench/*.c))
# Injection libraries of the benchmarks (CUDA_INJECTION64_PATH); they dlopen CUPTI.
BENCH_INJECT := $(patsubst bench/inject/%.c,$(BUILD)/lib/bench-%.so,$(wildcard bench/inject/*.c))
# Libraries that call the driver directly, linked against libcuda.so.1 (no rpath: the real one at run time).
BENCH_DIRECT := $(patsubst bench/direct/%.c,$(BUILD)/lib/bench-%.so,$(wildcard bench/direct/*.c))

.PHONY: all test demo gpu-test bench install clean sanitize deps deps-test help FORCE
# Keep objects of test and bench programs (make would delete them as intermediates).
.SECONDARY:
all: $(LIB) $(CLI) $(DEMO) $(FAKE_DRIVER) $(FAKE_CUPTI) $(FAKE_NVML) $(BUILD)/memsaver.pc $(BENCH_BINS) $(BENCH_INJECT) $(BENCH_DIRECT)

# ---- memsaver attach (BPF uprobes; tracer/bpf/) ---------------------------
# Built only when clang, bpftool, libbpf-dev (libbpf.a), libelf.a, libz.a and
# the kernel's BTF are present; libbpf, libelf and zlib are linked statically
# so the CLI runs where libbpf is not installed.  Without them `memsaver
# attach` says how to get it and nothing else in the build changes.
BPF_CLANG ?= clang
BPFTOOL ?= $(firstword $(shell command -v bpftool 2>/dev/null) $(wildcard /usr/sbin/bpftool /sbin/bpftool))
BPF_VMLINUX ?= /sys/kernel/btf/vmlinux
BPF_STATIC := $(foreach l,libbpf.a libelf.a libz.a,$(shell $(CC) -print-file-name=$(l)))
BPF_MISSING := $(strip \
	$(if $(shell command -v $(BPF_CLANG) 2>/dev/null),,clang) \
	$(if $(BPFTOOL),,bpftool) \
	$(if $(wildcard /usr/include/bpf/libbpf.h),,libbpf-dev) \
	$(foreach l,$(BPF_STATIC),$(if $(filter /%,$(l)),,$(l))) \
	$(if $(wildcard /usr/include/gelf.h),,libelf-dev) \
	$(if $(wildcard $(BPF_VMLINUX)),,kernel-BTF($(BPF_VMLINUX))))
ifeq ($(BPF_MISSING),)
ATTACH_OBJS := $(BUILD)/obj/tracer/bpf/attach.o
ATTACH_LIBS := $(BPF_STATIC)
$(BUILD)/obj/tools/memsaver/cmd_attach.o: CPPFLAGS += -DMSV_HAVE_BPF=1
$(BUILD)/obj/tools/memsaver/cmd_attach.o $(ATTACH_OBJS): $(BUILD)/bpf/attach.skel.h
$(ATTACH_OBJS): CPPFLAGS += -I$(BUILD)/bpf
$(BUILD)/bpf/vmlinux.h:
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  BTF     $@")
	$(Q)$(BPFTOOL) btf dump file $(BPF_VMLINUX) format c > $@.tmp && mv $@.tmp $@
$(BUILD)/bpf/attach.bpf.o: tracer/bpf/attach.bpf.c tracer/bpf/attach_event.h $(BUILD)/bpf/vmlinux.h
	@$(if $(Q),echo "  BPF     $@")
	$(Q)$(BPF_CLANG) -g -O2 -target bpf -D__TARGET_ARCH_x86 -I$(BUILD)/bpf -Itracer/bpf \
		-Wall -Werror -c $< -o $@
$(BUILD)/bpf/attach.skel.h: $(BUILD)/bpf/attach.bpf.o
	@$(if $(Q),echo "  GEN     $@")
	$(Q)$(BPFTOOL) gen skeleton $< name attach_bpf > $@.tmp && mv $@.tmp $@
else
ATTACH_OBJS :=
ATTACH_LIBS :=
ifeq ($(MAKELEVEL),0)
$(info memsaver: `memsaver attach` not built: missing $(BPF_MISSING) (tools/install-deps.sh installs clang, bpftool, libbpf-dev, libelf-dev, zlib1g-dev))
endif
endif

help:
	@echo "make            build everything into $(BUILD)/"
	@echo "make demo       run demo-engine under memsaver (GPU if present, else the fake driver)"
	@echo "make test       unit, fake-driver and end-to-end tests (no GPU needed)"
	@echo "make sanitize   the test suite built with ASan+UBSan into $(BUILD)-san/"
	@echo "make fuzz       libFuzzer on the parsers, FUZZ_SECONDS=$(FUZZ_SECONDS) each (clang; $(BUILD)-fuzz/)"
	@echo "make tsan       the concurrency stress under ThreadSanitizer (clang; $(BUILD)-tsan/)"
	@echo "make gpu-test   the GPU scenarios (exit 77 without a GPU)"
	@echo "make cross-check the library built for aarch64 (GH200) into $(BUILD)-aarch64/"
	@echo "make bench      benchmarks, JSON lines on stdout (GPU machine)"
	@echo "make install    PREFIX=$(PREFIX) DESTDIR=$(DESTDIR)"
	@echo "make clean"

deps:
	$(Q)tools/install-deps.sh

# The tests also render the HTML report in Chromium.
deps-test:
	$(Q)MSV_WANT_CHROMIUM=1 tools/install-deps.sh

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -c -o $@ $<

$(CORE): $(call obj,$(CORE_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

# Only the public API, dlsym and the injection entry points leave the library.
# memsaver's kernels (saver/kernels.cu: backup digest, restore copy), built
# for sm_80, sm_90 and as PTX, embedded in the library.  Without nvcc the
# image is empty: every pause copies its whole backup (saver/digest.h) and
# every resume restores by the copy engines (saver/copy.h).
NVCC ?= $(CUDA_HOME)/bin/nvcc
KERNELS_OBJ := $(BUILD)/obj/saver/kernels_image.o
$(BUILD)/gen/kernels.fatbin: saver/kernels.cu saver/digest_mix.h
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  NVCC    $@")
	$(Q)if [ -x "$(NVCC)" ]; then $(NVCC) -I. -fatbin -gencode arch=compute_80,code=sm_80 \
		-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90 -o $@ $<; \
	else echo "memsaver: no nvcc at $(NVCC): backups are copied whole on every pause, restores go by the copy engines"; : > $@; fi
$(KERNELS_OBJ): $(BUILD)/gen/kernels.fatbin
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  AS      $@")
	$(Q)printf '%s\n' '.section .rodata' '.balign 16' '.globl _msv_kernels_image' '.hidden _msv_kernels_image' \
		'_msv_kernels_image:' '.incbin "$(abspath $<)"' '_msv_kernels_image_end:' '.byte 0' '.balign 8' \
		'.globl _msv_kernels_image_len' '.hidden _msv_kernels_image_len' '_msv_kernels_image_len:' \
		'.quad _msv_kernels_image_end - _msv_kernels_image' '.section .note.GNU-stack,"",@progbits' \
		| $(CC) -c -x assembler -o $@ -

$(LIB): $(call obj,$(LIB_SRCS)) $(KERNELS_OBJ) saver/exports.map
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -Wl,--version-script=saver/exports.map -Wl,--exclude-libs,ALL \
		-Wl,-z,nodelete -o $@ $(call obj,$(LIB_SRCS)) $(KERNELS_OBJ) $(LDLIBS_CORE)

$(CLI): $(call obj,$(CLI_SRCS)) $(ATTACH_OBJS) $(CORE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $(call obj,$(CLI_SRCS)) $(ATTACH_OBJS) $(CORE) $(ATTACH_LIBS) $(LDLIBS_CORE)

$(DEMO): $(call obj,$(DEMO_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $^ -ldl -lpthread

$(BUILD)/bin/bench-%: $(BUILD)/obj/bench/%.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $^ -ldl -lpthread -lm

$(BUILD)/lib/bench-%.so: bench/inject/%.c
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $< -ldl

$(BENCH_DIRECT): $(BUILD)/lib/bench-%.so: bench/direct/%.c $(FAKE_DRIVER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $< -L$(BUILD)/fakecuda -l:libcuda.so.1

$(FAKE_DRIVER): $(call obj,$(FAKE_DRIVER_SRCS))
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -Wl,-soname,libcuda.so.1 -o $@ $^ -ldl -lpthread

$(FAKE_CUPTI): $(call obj,$(FAKE_CUPTI_SRCS)) $(FAKE_DRIVER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -Wl,-soname,libcupti.so.13 -o $@ $(call obj,$(FAKE_CUPTI_SRCS)) \
		-L$(BUILD)/fakecuda -l:libcuda.so.1 -Wl,-rpath,'$$ORIGIN' -ldl -lpthread

$(FAKE_NVML): $(call obj,$(FAKE_NVML_SRCS)) $(FAKE_DRIVER)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) -shared $(SAN) -Wl,-soname,libnvidia-ml.so.1 -o $@ $(call obj,$(FAKE_NVML_SRCS)) \
		-L$(BUILD)/fakecuda -l:libcuda.so.1 -Wl,-rpath,'$$ORIGIN' -ldl -lpthread

$(BUILD)/tests/test_%: $(BUILD)/obj/tests/unit/test_%.o $(CORE)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $< $(CORE) $$(pkg-config --libs check) $(LDLIBS_CORE)

$(BUILD)/tests/fakecuda_%: $(BUILD)/obj/tests/fakecuda/%.o $(FAKE_DRIVER) $(FAKE_CUPTI)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $< -L$(BUILD)/fakecuda -l:libcuda.so.1 -l:libcupti.so.13 \
		-Wl,-rpath,'$$ORIGIN/../fakecuda' $$(pkg-config --libs check) -ldl -lpthread

# Run under LD_PRELOAD of the library: no libcuda at link time (they dlopen
# it and use cuGetProcAddress_v2, as libcudart does).
$(BUILD)/tests/preload_%: $(BUILD)/obj/tests/preload/%.o
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(SAN) -o $@ $< $$(pkg-config --libs check) -ljansson -ldl -lpthread

# Written on every run: it carries PREFIX, which install may change.
$(BUILD)/memsaver.pc: FORCE
	@mkdir -p $(dir $@)
	$(Q)printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: memsaver\nDescription: release and restore GPU memory of unmodified CUDA engines\nVersion: %s\nLibs: -L$${libdir} -lmemsaver\nCflags: -I$${includedir}\n' \
		'$(PREFIX)' '$(VERSION)' > $@

test: deps-test
	$(Q)$(MAKE) --no-print-directory all $(UNIT_BINS) $(FAKE_TEST_BINS) $(PRELOAD_TEST_BINS) $(FUZZ_REPLAY_BINS)
	$(Q)BUILD=$(BUILD) tests/run.sh

sanitize: deps
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)-san SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" \
		all $(patsubst $(BUILD)/%,$(BUILD)-san/%,$(UNIT_BINS) $(FAKE_TEST_BINS))
	$(Q)BUILD=$(BUILD)-san MSV_SANITIZE=1 tests/run.sh

demo: deps all
	$(Q)BUILD=$(BUILD) tools/demo/run-demo.sh

gpu-test: all
	$(Q)BUILD=$(BUILD) tests/gpu/run.sh

bench: all
	$(Q)BUILD=$(BUILD) bench/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
		$(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/share/memsaver/policies \
		$(DESTDIR)$(PREFIX)/share/memsaver/python/memsaver
	install -m 0755 $(CLI) $(DESTDIR)$(PREFIX)/bin/memsaver
	install -m 0755 $(LIB) $(DESTDIR)$(PREFIX)/lib/libmemsaver.so
	install -m 0644 include/memsaver.h $(DESTDIR)$(PREFIX)/include/memsaver.h
	install -m 0644 $(BUILD)/memsaver.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/memsaver.pc
	install -m 0644 tools/policies/*.json $(DESTDIR)$(PREFIX)/share/memsaver/policies/
	install -m 0644 tools/python/memsaver/*.py $(DESTDIR)$(PREFIX)/share/memsaver/python/memsaver/

clean:
	rm -rf $(BUILD) $(BUILD)-san $(BUILD)-fuzz $(BUILD)-tsan

FORCE:

# ---- hardening: fuzzing and ThreadSanitizer (issue 16, docs/reliability.md) --
# Targets in tests/fuzz/fuzz_NAME.c.  make test replays their corpora and the
# inputs that once failed (tests/fuzz/{corpus,regress}/NAME) through the same
# entry point, built with $(CC) as $(BUILD)/tests/test_fuzz_NAME.  make fuzz
# builds them with clang's libFuzzer + ASan + UBSan into $(BUILD)-fuzz/ and
# runs each for FUZZ_SECONDS; what it finds lands in $(BUILD)-fuzz/artifacts/.
FUZZ_TARGETS := policy trace report control
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	-fno-omit-frame-pointer
FUZZ_REPLAY_BINS := $(patsubst %,$(BUILD)/tests/test_fuzz_%,$(FUZZ_TARGETS))
FUZZ_BINS := $(patsubst %,$(BUILD)/fuzz/fuzz_%,$(FUZZ_TARGETS))
TSAN_SAN := -fsanitize=thread -fno-omit-frame-pointer -fsanitize-ignorelist=tests/tsan/ignore.txt
.PHONY: fuzz fuzz-build tsan
# ThreadSanitizer's interceptors call the library's dlsym before the TSan
# runtime is up (tests/tsan/ignore.txt): those two files get no function
# entry/exit hooks, their memory accesses stay instrumented.
ifneq ($(filter -fsanitize=thread,$(SAN)),)
$(BUILD)/obj/saver/interpose.o $(BUILD)/obj/tracer/driver.o: CFLAGS += -mllvm -tsan-instrument-func-entry-exit=0
endif

$(BUILD)/tests/test_fuzz_%: tests/fuzz/fuzz_%.c $(CORE)
	@mkdir -p $(dir $@) $(BUILD)/obj/tests/fuzz
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -DMSV_FUZZ_REPLAY -MMD -MP \
		-MF $(BUILD)/obj/tests/fuzz/replay_$*.d -o $@ $< $(CORE) $(LDLIBS_CORE)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(CORE)
	@mkdir -p $(dir $@) $(BUILD)/obj/tests/fuzz
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -fsanitize=fuzzer -MMD -MP \
		-MF $(BUILD)/obj/tests/fuzz/fuzz_$*.d -o $@ $< $(CORE) $(LDLIBS_CORE)

fuzz-build: deps
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)-fuzz CC=$(FUZZ_CC) SAN="$(FUZZ_SAN)" \
		$(patsubst $(BUILD)/%,$(BUILD)-fuzz/%,$(FUZZ_BINS))

fuzz: fuzz-build
	$(Q)BUILD=$(BUILD)-fuzz FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh $(FUZZ_TARGETS)

# The library, the fake driver and tests/tsan/stress.c built with clang's
# ThreadSanitizer; the stress runs with the library preloaded.
tsan: deps
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)-tsan CC=$(FUZZ_CC) SAN="$(TSAN_SAN)" \
		$(BUILD)-tsan/lib/libmemsaver.so $(BUILD)-tsan/fakecuda/libcuda.so.1 \
		$(BUILD)-tsan/fakecuda/libcupti.so.13 $(BUILD)-tsan/bin/tsan-stress
	$(Q)BUILD=$(BUILD)-tsan tests/tsan/run.sh

$(BUILD)/bin/tsan-stress: tests/tsan/stress.c
	@mkdir -p $(dir $@) $(BUILD)/obj/tests/tsan
	@$(if $(Q),echo "  CCLD    $@")
	$(Q)$(CC) $(CPPFLAGS) $(ALL_CFLAGS) -MMD -MP -MF $(BUILD)/obj/tests/tsan/stress.d \
		-o $@ $< -ldl -lpthread

# aarch64 (GH200): the library compiled and linked by a cross compiler into
# $(BUILD)-aarch64/.  No arm64 libjansson is installed here, so jansson's
# symbols stay undefined in that link (the host's libjansson.so.4 supplies
# them), and the digest kernel is left out (no nvcc for it).
# tests/e2e/cross_aarch64.sh runs this and the interposer under qemu-aarch64.
AARCH64_CC ?= aarch64-linux-gnu-gcc
.PHONY: cross-check
cross-check:
	$(Q)command -v $(AARCH64_CC) >/dev/null || { echo "memsaver: cross-check needs $(AARCH64_CC)" \
		"(tools/install-deps.sh installs gcc-aarch64-linux-gnu)"; exit 1; }
	$(Q)$(MAKE) --no-print-directory BUILD=$(BUILD)-aarch64 CC=$(AARCH64_CC) NVCC=/nonexistent \
		BPF_CLANG=none LDLIBS_CORE="-lpthread -ldl -lm" $(BUILD)-aarch64/lib/libmemsaver.so

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

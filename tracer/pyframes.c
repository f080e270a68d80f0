/* Python call sites read from C: see pyframes.h for the contract.
 *
 * Why memory reads and not the C API: the thread that allocates usually does
 * not hold the GIL (PyTorch drops it before dispatch, ctypes around foreign
 * calls), and taking it from inside an allocator deadlocks against the
 * allocator's own lock.  Every API that returns a frame or a string either
 * needs the GIL or may allocate.  The thread's own frame chain, though, cannot
 * change while the thread is blocked in our code, so reading it is safe; the
 * same reasoning lets faulthandler and py-spy walk frames without the GIL.
 *
 * The only CPython functions called after init are
 * PyGILState_GetThisThreadState (documented to work without the GIL: it reads
 * thread-specific storage), PyCode_Addr2Line (it only decodes the code
 * object's immutable line table into a stack-allocated cursor) and
 * Py_IsFinalizing / _Py_IsFinalizing (an atomic load of _PyRuntime's
 * finalizing thread state).
 *
 * Why no read once the interpreter finalizes: Py_FinalizeEx marks the runtime
 * finalizing and then frees the thread states of the daemon threads, which
 * may be inside C code at that moment (an allocation), while their
 * thread-specific storage still points at the freed state; what
 * PyGILState_GetThisThreadState returns then is a dangling pointer.  Nothing
 * Python runs during finalization needs a call site more than the host needs
 * not to crash.  A read that began just before the flag was set can still
 * race the free; that window is the few microseconds of one read.
 *
 * The offsets below were taken with offsetof() against each version's own
 * headers (Include/cpython/pystate.h, Include/internal/pycore_frame.h,
 * Include/cpython/code.h, Include/cpython/unicodeobject.h) for a default
 * (non-debug, GIL) build on LP64.  CPython keeps these layouts fixed within a
 * minor version.  For 3.13 the interpreter publishes the same offsets in
 * _PyRuntime.debug_offsets; when present they override the table. */
#include "tracer/pyframes.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tracer/log.h"

enum frame_kind {
	FRAME_OBJECT_CHAIN,  /* 3.10: PyFrameObject linked by f_back */
	FRAME_INTERP_CHAIN,  /* 3.11+: _PyInterpreterFrame linked by previous */
};

struct py_layout {
	int minor;
	enum frame_kind kind;
	/* PyThreadState: frame (3.10), cframe (3.11, 3.12), current_frame (3.13) */
	size_t ts_frame;
	/* _PyCFrame.current_frame, or -1 when ts_frame already is the frame */
	long cframe_current;
	size_t fr_code;     /* f_code / f_executable */
	size_t fr_back;     /* f_back / previous */
	size_t fr_instr;    /* 3.10: int f_lasti; 3.11+: prev_instr / instr_ptr */
	long fr_lineno;     /* 3.10: int f_lineno (set while tracing), else -1 */
	long fr_owner;      /* char owner, -1 when none */
	int owner_cstack;   /* owner value of C-stack shim frames, -1 when none */
	size_t co_filename;
	size_t co_name;
	long co_code;       /* co_code_adaptive (3.11+), -1 for 3.10 */
	size_t ascii_size;  /* sizeof(PyASCIIObject) */
	size_t compact_size; /* sizeof(PyCompactUnicodeObject) */
};

/* Shared by every version: PyObject.ob_type, PyVarObject.ob_size,
 * PyASCIIObject.length and .state, and the state bits (interned:2, kind:3,
 * compact:1, ascii:1, then ready (<=3.11) or statically_allocated (>=3.12)). */
#define OFF_OB_TYPE 8
#define OFF_OB_SIZE 16
#define OFF_UNI_LENGTH 16
#define OFF_UNI_STATE 32
#define UNI_KIND(s) (((s) >> 2) & 7u)
#define UNI_COMPACT(s) (((s) >> 5) & 1u)
#define UNI_ASCII(s) (((s) >> 6) & 1u)

static const struct py_layout layouts[] = {
	{ .minor = 10, .kind = FRAME_OBJECT_CHAIN, .ts_frame = 24, .cframe_current = -1,
	  .fr_code = 32, .fr_back = 24, .fr_instr = 96, .fr_lineno = 100, .fr_owner = -1,
	  .owner_cstack = -1, .co_filename = 104, .co_name = 112, .co_code = -1,
	  .ascii_size = 48, .compact_size = 72 },
	/* 3.11 has no shim frames: entry frames are marked by is_entry instead. */
	{ .minor = 11, .kind = FRAME_INTERP_CHAIN, .ts_frame = 56, .cframe_current = 8,
	  .fr_code = 32, .fr_back = 48, .fr_instr = 56, .fr_lineno = -1, .fr_owner = 69,
	  .owner_cstack = -1, .co_filename = 112, .co_name = 120, .co_code = 184,
	  .ascii_size = 48, .compact_size = 72 },
	{ .minor = 12, .kind = FRAME_INTERP_CHAIN, .ts_frame = 56, .cframe_current = 0,
	  .fr_code = 0, .fr_back = 8, .fr_instr = 56, .fr_lineno = -1, .fr_owner = 70,
	  .owner_cstack = 3, .co_filename = 112, .co_name = 120, .co_code = 192,
	  .ascii_size = 40, .compact_size = 56 },
	{ .minor = 13, .kind = FRAME_INTERP_CHAIN, .ts_frame = 72, .cframe_current = -1,
	  .fr_code = 0, .fr_back = 8, .fr_instr = 56, .fr_lineno = -1, .fr_owner = 70,
	  .owner_cstack = 3, .co_filename = 112, .co_name = 120, .co_code = 200,
	  .ascii_size = 40, .compact_size = 56 },
};

/* The prefix of 3.13's _Py_DebugOffsets (Include/internal/pycore_runtime.h,
 * v3.13.0) up to the unicode offsets; _PyRuntime starts with it.  3.14
 * changed this struct, so it is only trusted when version says 3.13. */
struct py313_debug_offsets {
	char cookie[8];
	uint64_t version;
	uint64_t free_threaded;
	struct { uint64_t size, finalizing, interpreters_head; } runtime_state;
	struct {
		uint64_t size, id, next, threads_head, gc, imports_modules, sysdict, builtins,
			ceval_gil, gil_runtime_state, gil_runtime_state_enabled,
			gil_runtime_state_locked, gil_runtime_state_holder;
	} interpreter_state;
	struct {
		uint64_t size, prev, next, interp, current_frame, thread_id, native_thread_id,
			datastack_chunk, status;
	} thread_state;
	struct { uint64_t size, previous, executable, instr_ptr, localsplus, owner; } interpreter_frame;
	struct {
		uint64_t size, filename, name, qualname, linetable, firstlineno, argcount,
			localsplusnames, localspluskinds, co_code_adaptive;
	} code_object;
	struct { uint64_t size, ob_type; } pyobject;
	struct { uint64_t size, tp_name, tp_repr, tp_flags; } type_object;
	struct { uint64_t size, ob_item, ob_size; } tuple_object;
	struct { uint64_t size, ob_item, ob_size; } list_object;
	struct { uint64_t size, ma_keys, ma_values; } dict_object;
	struct { uint64_t size, ob_fval; } float_object;
	struct { uint64_t size, lv_tag, ob_digit; } long_object;
	struct { uint64_t size, ob_size, ob_sval; } bytes_object;
	struct { uint64_t size, state, length, asciiobject_size; } unicode_object;
};

typedef void *(*get_tstate_fn)(void);
typedef int (*finalizing_fn)(void);
typedef int (*addr2line_fn)(void *code, int addr);

static struct {
	pthread_once_t once;
	int status;
	char version[32];
	struct py_layout L;
	get_tstate_fn get_tstate;
	finalizing_fn finalizing;
	addr2line_fn addr2line;
	const void *code_type;
	const void *unicode_type;
	const void *frame_type; /* 3.10 only */
} py = { .once = PTHREAD_ONCE_INIT, .status = -ENOENT };

static inline const void *ld_ptr(const void *base, size_t off)
{
	const void *p;
	memcpy(&p, (const char *)base + off, sizeof(p));
	return p;
}

static inline int has_type(const void *obj, const void *type)
{
	return obj && ld_ptr(obj, OFF_OB_TYPE) == type;
}

/* 3.13: prefer the offsets the interpreter itself publishes; refuse the
 * debug offsets of a free-threaded build, whose object header differs. */
static int apply_debug_offsets(struct py_layout *L)
{
	const struct py313_debug_offsets *d = dlsym(RTLD_DEFAULT, "_PyRuntime");

	if (!d || memcmp(d->cookie, "xdebugpy", 8) != 0)
		return 0;
	if ((d->version >> 16) != 0x030d)
		return 0;
	if (d->free_threaded)
		return -ENOTSUP;
	if (d->pyobject.ob_type != OFF_OB_TYPE || d->unicode_object.state != OFF_UNI_STATE ||
	    d->unicode_object.length != OFF_UNI_LENGTH)
		return -ENOTSUP;
	if (d->thread_state.current_frame != L->ts_frame ||
	    d->interpreter_frame.executable != L->fr_code ||
	    d->interpreter_frame.previous != L->fr_back ||
	    d->interpreter_frame.instr_ptr != L->fr_instr ||
	    d->interpreter_frame.owner != (uint64_t)L->fr_owner ||
	    d->code_object.filename != L->co_filename || d->code_object.name != L->co_name ||
	    d->code_object.co_code_adaptive != (uint64_t)L->co_code ||
	    d->unicode_object.asciiobject_size != L->ascii_size)
		MSV_INFO("python %s: debug offsets differ from the built-in table; using them",
			 py.version);
	L->ts_frame = d->thread_state.current_frame;
	L->fr_code = d->interpreter_frame.executable;
	L->fr_back = d->interpreter_frame.previous;
	L->fr_instr = d->interpreter_frame.instr_ptr;
	L->fr_owner = (long)d->interpreter_frame.owner;
	L->co_filename = d->code_object.filename;
	L->co_name = d->code_object.name;
	L->co_code = (long)d->code_object.co_code_adaptive;
	/* PyCompactUnicodeObject adds utf8_length and utf8 to the ASCII header. */
	L->compact_size = d->unicode_object.asciiobject_size + 2 * sizeof(void *);
	L->ascii_size = d->unicode_object.asciiobject_size;
	return 0;
}

static int detect(void)
{
	const char *(*get_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT, "Py_GetVersion");
	const char *v;
	unsigned major = 0, minor = 0, micro = 0;
	size_t i, n;

	if (!get_version)
		return -ENOENT;
	v = get_version();
	if (!v)
		return -ENOENT;
	for (n = 0; v[n] && v[n] != ' ' && n + 1 < sizeof(py.version); n++)
		py.version[n] = v[n];
	py.version[n] = '\0';
	if (sscanf(py.version, "%u.%u.%u", &major, &minor, &micro) < 2 || major != 3) {
		MSV_WARN("python %s: not CPython 3, Python call sites are not recorded", py.version);
		return -ENOTSUP;
	}
	if (strstr(v, "free-threading")) {
		MSV_WARN("python %s: free-threaded build, Python call sites are not recorded",
			 py.version);
		return -ENOTSUP;
	}
	for (i = 0; i < sizeof(layouts) / sizeof(layouts[0]); i++)
		if (layouts[i].minor == (int)minor)
			py.L = layouts[i];
	if (py.L.minor == 0 || sizeof(void *) != 8) {
		MSV_WARN("python %s: version not supported, Python call sites are not recorded "
			 "(supported: 3.10 to 3.13)", py.version);
		return -ENOTSUP;
	}
	py.get_tstate = (get_tstate_fn)dlsym(RTLD_DEFAULT, "PyGILState_GetThisThreadState");
	/* 3.13 made the private _Py_IsFinalizing public as Py_IsFinalizing. */
	py.finalizing = (finalizing_fn)dlsym(RTLD_DEFAULT, "Py_IsFinalizing");
	if (!py.finalizing)
		py.finalizing = (finalizing_fn)dlsym(RTLD_DEFAULT, "_Py_IsFinalizing");
	py.addr2line = (addr2line_fn)dlsym(RTLD_DEFAULT, "PyCode_Addr2Line");
	py.code_type = dlsym(RTLD_DEFAULT, "PyCode_Type");
	py.unicode_type = dlsym(RTLD_DEFAULT, "PyUnicode_Type");
	py.frame_type = dlsym(RTLD_DEFAULT, "PyFrame_Type");
	if (!py.get_tstate || !py.finalizing || !py.addr2line || !py.code_type || !py.unicode_type ||
	    (py.L.kind == FRAME_OBJECT_CHAIN && !py.frame_type)) {
		MSV_WARN("python %s: interpreter symbols missing, Python call sites are not recorded",
			 py.version);
		return -ENOTSUP;
	}
	if (py.L.minor == 13 && apply_debug_offsets(&py.L) < 0) {
		MSV_WARN("python %s: unusable debug offsets, Python call sites are not recorded",
			 py.version);
		return -ENOTSUP;
	}
	MSV_DEBUG("python %s: reading frames with the 3.%d layout", py.version, py.L.minor);
	return 0;
}

static void init_once(void)
{
	py.status = detect();
}

int _msv_pyframes_init(void)
{
	pthread_once(&py.once, init_once);
	return py.status;
}

const char *_msv_pyframes_version(void)
{
	_msv_pyframes_init();
	return py.version;
}

/* Bytes of code point c in UTF-8; lone surrogates become '?'. */
static size_t utf8_len(uint32_t c)
{
	return c < 0x80 ? 1 : c < 0x800 ? 2 : (c >= 0xd800 && c < 0xe000) ? 1 : c < 0x10000 ? 3 : 4;
}

static size_t utf8_put(uint32_t c, char *o)
{
	if (c < 0x80) {
		o[0] = (char)c;
		return 1;
	}
	if (c < 0x800) {
		o[0] = (char)(0xc0 | (c >> 6));
		o[1] = (char)(0x80 | (c & 0x3f));
		return 2;
	}
	if (c >= 0xd800 && c < 0xe000) {
		o[0] = '?';
		return 1;
	}
	if (c < 0x10000) {
		o[0] = (char)(0xe0 | (c >> 12));
		o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		o[2] = (char)(0x80 | (c & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (c >> 18));
	o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
	o[3] = (char)(0x80 | (c & 0x3f));
	return 4;
}

static inline uint32_t uni_char(const unsigned char *data, unsigned kind, size_t i)
{
	uint16_t u16;
	uint32_t u32;

	if (kind == 1)
		return data[i];
	if (kind == 2) {
		memcpy(&u16, data + 2 * i, 2);
		return u16;
	}
	memcpy(&u32, data + 4 * i, 4);
	return u32;
}

/* Encode str object s as UTF-8 into out (cap bytes, NUL-terminated).  When it
 * does not fit, "..." replaces the dropped characters: the leading ones when
 * keep_tail is set (a path keeps its basename), else the trailing ones.
 * Decoding the characters ourselves instead of PyUnicode_AsUTF8 avoids
 * allocating.  Returns the bytes written, or -1 when s is not a compact str. */
static int uni_encode(const void *s, char *out, size_t cap, int keep_tail)
{
	uint32_t state;
	int64_t len;
	unsigned kind;
	const unsigned char *data;
	size_t total = 0, i, first = 0, last, w = 0, budget;
	int ascii, cut = 0;

	if (cap < 8 || !has_type(s, py.unicode_type))
		return -1;
	memcpy(&state, (const char *)s + OFF_UNI_STATE, sizeof(state));
	memcpy(&len, (const char *)s + OFF_UNI_LENGTH, sizeof(len));
	kind = UNI_KIND(state);
	ascii = UNI_ASCII(state);
	/* Code objects' names are always compact; legacy strings are not read. */
	if (!UNI_COMPACT(state) || len < 0 || len > (1 << 20) ||
	    (kind != 1 && kind != 2 && kind != 4))
		return -1;
	data = (const unsigned char *)s + (ascii ? py.L.ascii_size : py.L.compact_size);
	last = (size_t)len;
	if (ascii)
		total = last;
	else
		for (i = 0; i < last; i++)
			total += utf8_len(uni_char(data, kind, i));
	if (total >= cap) {
		cut = 1;
		budget = cap - 1 - 3;
		if (ascii && keep_tail)
			first = last - budget;
		else if (ascii)
			last = budget;
		else if (keep_tail)
			while (total > budget)
				total -= utf8_len(uni_char(data, kind, first++));
		else
			while (total > budget)
				total -= utf8_len(uni_char(data, kind, --last));
	}
	if (cut && keep_tail) {
		memcpy(out, "...", 3);
		w = 3;
	}
	if (ascii) {
		memcpy(out + w, data + first, last - first);
		w += last - first;
	} else {
		for (i = first; i < last; i++)
			w += utf8_put(uni_char(data, kind, i), out + w);
	}
	if (cut && !keep_tail) {
		memcpy(out + w, "...", 3);
		w += 3;
	}
	out[w] = '\0';
	return (int)w;
}

/* Render one frame; returns 0 when the code object looks wrong. */
static int render(const void *code, int line, char *out)
{
	char name[96], lineno[16];
	int nlen, llen, room;

	nlen = uni_encode(ld_ptr(code, py.L.co_name), name, sizeof(name), 0);
	if (nlen < 0)
		return 0;
	llen = snprintf(lineno, sizeof(lineno), ":%d:", line);
	room = MSV_PYFRAME_LEN - llen - nlen;
	if (uni_encode(ld_ptr(code, py.L.co_filename), out, (size_t)room, 1) < 0)
		return 0;
	room = (int)strlen(out);
	memcpy(out + room, lineno, (size_t)llen);
	memcpy(out + room + llen, name, (size_t)nlen + 1);
	return 1;
}

static int line_of_interp_frame(const void *frame, const void *code)
{
	const char *instr = ld_ptr(frame, py.L.fr_instr);
	const char *start = (const char *)code + py.L.co_code;
	int64_t units;
	long off;

	/* ob_size of a 3.11+ code object counts its code units. */
	memcpy(&units, (const char *)code + OFF_OB_SIZE, sizeof(units));
	off = instr - start;
	if (off < 0 || units <= 0 || off >= units * 2)
		off = -1; /* fresh frame (or odd pointer): Addr2Line answers co_firstlineno */
	return py.addr2line((void *)code, (int)off);
}

/* The frames this thread rendered last, by position from the innermost.
 * A frame at the same address, running the same code object (with the same
 * name and file objects) at the same instruction, renders the same: it is
 * copied instead of rendered again (decoding the line table and the
 * strings is most of a read: 8,750 instructions per allocation for the
 * default depth of 8 against 260 for the native call site, callgrind). */
#define SEEN_MAX 32
struct seen_key {
	const void *f, *code, *name, *file;
	intptr_t pos; /* the instruction pointer; before 3.11, lasti and lineno */
};
static __thread struct {
	struct seen_key k[SEEN_MAX];
	char s[SEEN_MAX][MSV_PYFRAME_LEN];
	int ok[SEEN_MAX];
} seen;

static int same_key(const struct seen_key *a, const struct seen_key *b)
{
	return a->f == b->f && a->code == b->code && a->name == b->name && a->file == b->file && a->pos == b->pos;
}

/* Frame n of this read: from seen when its key matches, else rendered (line
 * computed only then) and kept.  Returns 1 when out holds a frame. */
static int frame_at(int n, const struct seen_key *k, const void *frame, char *out)
{
	if (n < SEEN_MAX && seen.ok[n] && same_key(&seen.k[n], k)) {
		memcpy(out, seen.s[n], MSV_PYFRAME_LEN);
		return 1;
	}
	int line;
	if (py.L.kind == FRAME_OBJECT_CHAIN) { /* pos holds lasti and lineno */
		int lineno = (int)(uint32_t)k->pos, ilast = (int)(uint32_t)((uint64_t)k->pos >> 32);
		line = lineno ? lineno : py.addr2line((void *)k->code, ilast * 2);
	} else {
		line = line_of_interp_frame(frame, k->code);
	}
	int ok = render(k->code, line, out);
	if (n < SEEN_MAX) {
		seen.ok[n] = ok;
		seen.k[n] = *k;
		if (ok)
			memcpy(seen.s[n], out, MSV_PYFRAME_LEN);
	}
	return ok;
}

int _msv_pyframes_read(char (*frames)[MSV_PYFRAME_LEN], int max)
{
	const void *ts, *f, *code;
	int n = 0, hops, ilast, lineno;
	char owner;

	if (max <= 0 || !frames || _msv_pyframes_init() != 0 || py.finalizing())
		return 0;
	ts = py.get_tstate();
	if (!ts)
		return 0;
	f = ld_ptr(ts, py.L.ts_frame);
	if (f && py.L.cframe_current >= 0)
		f = ld_ptr(f, (size_t)py.L.cframe_current);
	intptr_t pos;
	for (hops = 0; f && n < max && hops < MSV_PYFRAME_HOPS; hops++, f = ld_ptr(f, py.L.fr_back)) {
		if (py.L.kind == FRAME_OBJECT_CHAIN) {
			if (!has_type(f, py.frame_type))
				break;
			code = ld_ptr(f, py.L.fr_code);
			if (!has_type(code, py.code_type))
				break;
			memcpy(&lineno, (const char *)f + py.L.fr_lineno, sizeof(lineno));
			memcpy(&ilast, (const char *)f + py.L.fr_instr, sizeof(ilast));
			pos = (intptr_t)((uint64_t)(uint32_t)ilast << 32 | (uint32_t)lineno);
		} else {
			if (py.L.fr_owner >= 0) {
				owner = *((const char *)f + py.L.fr_owner);
				if (owner == py.L.owner_cstack)
					continue;
			}
			code = ld_ptr(f, py.L.fr_code);
			if (!has_type(code, py.code_type))
				continue; /* 3.13: f_executable may be None for a shim */
			pos = (intptr_t)ld_ptr(f, py.L.fr_instr);
		}
		struct seen_key k = {.f = f, .code = code, .name = ld_ptr(code, py.L.co_name),
				     .file = ld_ptr(code, py.L.co_filename), .pos = pos};
		n += frame_at(n, &k, f, frames[n]);
	}
	return n;
}

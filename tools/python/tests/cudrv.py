"""The CUDA driver API through ctypes, resolved the way libcudart does it
(dlopen libcuda.so.1, cuGetProcAddress_v2 per name), so that memsaver's
interposer sees exactly what it sees under PyTorch.  For the tests on the
fake driver (build/fakecuda); works on a real one too."""

import ctypes

CUDA_VERSION = 13000
RELAXED = 2  # CU_STREAM_CAPTURE_MODE_RELAXED, the mode PyTorch allocates in


class CudaError(RuntimeError):
    pass


class Driver:
    def __init__(self):
        self.lib = ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        self._gpa = self.lib.cuGetProcAddress_v2
        self._gpa.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int,
                              ctypes.c_uint64, ctypes.POINTER(ctypes.c_int)]
        self._gpa.restype = ctypes.c_int
        self._fns = {}
        self.call("cuInit", 0)
        dev = ctypes.c_int()
        self.call("cuDeviceGet", ctypes.byref(dev), 0)
        self.ctx = ctypes.c_void_p()
        self.call("cuDevicePrimaryCtxRetain", ctypes.byref(self.ctx), dev)
        self.call("cuCtxSetCurrent", self.ctx)

    def fn(self, name):
        if name not in self._fns:
            p, status = ctypes.c_void_p(), ctypes.c_int()
            r = self._gpa(name.encode(), ctypes.byref(p), CUDA_VERSION, 0, ctypes.byref(status))
            if r or status.value or not p.value:
                raise CudaError(f"cuGetProcAddress_v2({name}) failed: {r}/{status.value}")
            self._fns[name] = ctypes.CFUNCTYPE(ctypes.c_int)(p.value)
        return self._fns[name]

    def call(self, name, *args):
        r = self.fn(name)(*args)
        if r:
            raise CudaError(f"{name} failed: CUresult {r}")

    def alloc(self, size):
        p = ctypes.c_uint64()
        self.call("cuMemAlloc", ctypes.byref(p), ctypes.c_size_t(size))
        return p.value

    def free(self, ptr):
        self.call("cuMemFree", ctypes.c_uint64(ptr))

    def write(self, ptr, data):
        self.call("cuMemcpyHtoD", ctypes.c_uint64(ptr), ctypes.c_char_p(data), ctypes.c_size_t(len(data)))

    def read(self, ptr, size):
        buf = ctypes.create_string_buffer(size)
        self.call("cuMemcpyDtoH", buf, ctypes.c_uint64(ptr), ctypes.c_size_t(size))
        return buf.raw

    def used(self):
        free, total = ctypes.c_size_t(), ctypes.c_size_t()
        self.call("cuMemGetInfo", ctypes.byref(free), ctypes.byref(total))
        return total.value - free.value

    def stream(self):
        s = ctypes.c_void_p()
        self.call("cuStreamCreate", ctypes.byref(s), 0)
        return s

    def begin_capture(self, stream):
        self.call("cuStreamBeginCapture", stream, RELAXED)

    def end_capture(self, stream):
        g = ctypes.c_void_p()
        self.call("cuStreamEndCapture", stream, ctypes.byref(g))
        return g

    def synchronize(self):
        self.call("cuCtxSynchronize")

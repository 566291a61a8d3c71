// trigflow fast C-simulation, runtime part: the batched, parallel entry points (same for every project).
//
// Copied into the project by trigflow.firmware.fastsim from firmware/templates/fastsim/; do not edit.
// The project part (trigflow_batch.cpp) provides trigflow_gen_one(), which runs one sample through the
// project's hls4ml bridge, and the sizes. This file includes no project header.
//
// Modes (see trigflow.firmware.fastsim for how a project is classified):
//   0 threads    workers are std::threads sharing the library; one warm-up sample runs first in the calling
//                thread, so lazily initialised lookup tables (static bool initialized + static table[]) are
//                written before any worker exists and only read afterwards.
//   1 processes  workers are fork()ed children, each with its own copy of every static variable (io_stream
//                line buffers, recurrent state, ...); their outputs come back through shared memory.
// With one worker every sample runs in the calling thread, in order, like hls4ml predict.

#include <atomic>
#include <cerrno>
#include <cstring>
#include <new>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern "C" {
extern const int trigflow_gen_n_in;
extern const int trigflow_gen_n_out;
extern const long trigflow_gen_in_size[];
extern const long trigflow_gen_out_size[];
extern const int trigflow_gen_default_mode;
void trigflow_gen_one(double *const *in, double *const *out, long i);
}

#define TRIGFLOW_EXPORT extern "C" __attribute__((visibility("default")))

namespace {

const int ABI = 2;
const long BLOCK = 64; // samples a worker takes at a time (dynamic balancing on shared cores)

void work(double *const *in, double *const *out, long n, std::atomic<long> *next) {
    for (;;) {
        long begin = next->fetch_add(BLOCK, std::memory_order_relaxed);
        if (begin >= n)
            return;
        long end = begin + BLOCK < n ? begin + BLOCK : n;
        for (long i = begin; i < end; i++)
            trigflow_gen_one(in, out, i);
    }
}

int run_threads(double *const *in, double *const *out, long n, int workers) {
    std::atomic<long> next(1); // sample 0 ran as the warm-up
    std::vector<std::thread> pool;
    pool.reserve(workers - 1);
    for (int w = 1; w < workers; w++)
        pool.emplace_back(work, in, out, n, &next);
    work(in, out, n, &next);
    for (auto &t : pool)
        t.join();
    return 0;
}

int run_processes(double *const *in, double *const *out, long n, int workers) {
    // One shared mapping: the sample counter, then each output's rows.
    const int n_out = trigflow_gen_n_out;
    size_t header = 64, bytes = header;
    for (int k = 0; k < n_out; k++)
        bytes += sizeof(double) * trigflow_gen_out_size[k] * n;
    void *shared = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED)
        return -10;
    std::atomic<long> *next = new (shared) std::atomic<long>(1);
    std::vector<double *> shared_out(n_out);
    char *p = static_cast<char *>(shared) + header;
    for (int k = 0; k < n_out; k++) {
        shared_out[k] = reinterpret_cast<double *>(p);
        std::memcpy(shared_out[k], out[k], sizeof(double) * trigflow_gen_out_size[k]); // the warm-up sample
        p += sizeof(double) * trigflow_gen_out_size[k] * n;
    }
    std::vector<pid_t> children;
    for (int w = 1; w < workers; w++) {
        pid_t pid = fork();
        if (pid == 0) {
            work(in, shared_out.data(), n, next);
            _exit(0); // no atexit handlers, no destructors of the parent's (Python) state
        }
        if (pid < 0)
            break; // fewer workers: the others and this process still take every sample
        children.push_back(pid);
    }
    work(in, shared_out.data(), n, next);
    int rc = 0;
    for (pid_t pid : children) {
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            rc = -12; // a worker crashed: its samples are not trustworthy
    }
    if (rc == 0)
        for (int k = 0; k < n_out; k++)
            std::memcpy(out[k], shared_out[k], sizeof(double) * trigflow_gen_out_size[k] * n);
    munmap(shared, bytes);
    return rc;
}

} // namespace

TRIGFLOW_EXPORT int trigflow_abi(void) { return ABI; }
TRIGFLOW_EXPORT int trigflow_n_inputs(void) { return trigflow_gen_n_in; }
TRIGFLOW_EXPORT int trigflow_n_outputs(void) { return trigflow_gen_n_out; }
TRIGFLOW_EXPORT long trigflow_input_size(int k) { return k >= 0 && k < trigflow_gen_n_in ? trigflow_gen_in_size[k] : -1; }
TRIGFLOW_EXPORT long trigflow_output_size(int k) {
    return k >= 0 && k < trigflow_gen_n_out ? trigflow_gen_out_size[k] : -1;
}
TRIGFLOW_EXPORT int trigflow_default_mode(void) { return trigflow_gen_default_mode; }

// in[k]: n rows of trigflow_input_size(k) doubles; out[k]: n rows of trigflow_output_size(k) doubles.
// Returns 0 on success.
TRIGFLOW_EXPORT int trigflow_batch_multi(double *const *in, double *const *out, long n, int workers, int mode) {
    if (n <= 0)
        return 0;
    if (mode != 0 && mode != 1)
        return -2;
    trigflow_gen_one(in, out, 0); // warm-up: lazy tables are initialised here, before any worker exists
    long most = (n - 1 + BLOCK - 1) / BLOCK;
    if (workers > most)
        workers = (int)most;
    if (workers <= 1) {
        for (long i = 1; i < n; i++)
            trigflow_gen_one(in, out, i);
        return 0;
    }
    return mode == 0 ? run_threads(in, out, n, workers) : run_processes(in, out, n, workers);
}

// Single input, single output, in the project's default (safe) mode.
TRIGFLOW_EXPORT int trigflow_batch(const double *in, double *out, long n, int threads) {
    if (trigflow_gen_n_in != 1 || trigflow_gen_n_out != 1)
        return -1;
    double *ins[1] = {const_cast<double *>(in)};
    double *outs[1] = {out};
    return trigflow_batch_multi(ins, outs, n, threads, trigflow_gen_default_mode);
}

// Just enough of CUDA's programming model to run src/kernels/gpu/kernels.cu on the CPU, for
// tests/cuda_kernels_emulated.rs: one block at a time, each of its threads a std::thread, and
// __syncthreads a std::barrier across them; __shared__ arrays are function statics (one block at
// a time shares them correctly). It checks the kernels' index arithmetic and formulas, not
// their speed or the GPU's memory model.
#pragma once
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdint.h>
#include <thread>
#include <vector>

struct Dim3 {
    unsigned x = 1, y = 1, z = 1;
};
inline thread_local Dim3 threadIdx;
inline Dim3 blockIdx, blockDim, gridDim;
inline std::barrier<>* emu_barrier = nullptr;
inline void __syncthreads() {
    if (!emu_barrier) {
        std::fprintf(stderr, "a kernel launched with emu_launch_seq calls __syncthreads: launch it with emu_launch\n");
        std::abort();
    }
    emu_barrier->arrive_and_wait();
}

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fsqrt_rn(float a) { return std::sqrt(a); }
// cuda_bf16.h's bfloat16: the top half of a float32's bits, rounded to nearest even on the way
// in (NaN kept quiet), exact on the way out.
struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return __nv_bfloat16{(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return __nv_bfloat16{(uint16_t)(u >> 16)};
}
using std::fmaxf;
using std::fminf;
using std::min;
using std::sqrt;

// Runs kernel(args...) over grid x block with each block's threads one after another on the
// calling thread: for kernels without __syncthreads (which aborts here), a hundred times faster
// than a std::thread a CUDA thread.
template <class F, class... A>
void emu_launch_seq(Dim3 grid, Dim3 block, F kernel, A... args) {
    gridDim = grid;
    blockDim = block;
    emu_barrier = nullptr;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx = Dim3{bx, by, 0};
            for (unsigned t = 0; t < block.x; t++) {
                threadIdx = Dim3{t, 0, 0};
                kernel(args...);
            }
        }
}

// Runs kernel(args...) over grid x block (x and y of the grid; x of the block), each CUDA thread
// a std::thread, so that __syncthreads is a real barrier.
template <class F, class... A>
void emu_launch(Dim3 grid, Dim3 block, F kernel, A... args) {
    gridDim = grid;
    blockDim = block;
    for (unsigned by = 0; by < grid.y; by++) {
        for (unsigned bx = 0; bx < grid.x; bx++) {
            blockIdx = Dim3{bx, by, 0};
            std::barrier<> bar(block.x);
            emu_barrier = &bar;
            std::vector<std::thread> ts;
            for (unsigned t = 0; t < block.x; t++) {
                ts.emplace_back([&, t] {
                    threadIdx = Dim3{t, 0, 0};
                    kernel(args...);
                });
            }
            for (auto& t : ts) t.join();
        }
    }
}

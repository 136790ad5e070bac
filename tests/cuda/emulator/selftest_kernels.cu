// Small kernels with known answers and known bugs: they check the emulator itself.

// Block sum through shared memory and a warp-shuffle tail; launch with 64..1024 threads.
__global__ void block_sum(const float *x, float *out, int n) {
  __shared__ float partial[32];
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int i = blockIdx.x * blockDim.x + tid;
  float v = i < n ? x[i] : 0.0f;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < (int)(blockDim.x / 32) ? partial[lane] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
    if (lane == 0) out[blockIdx.x] = v;
  }
}

// Rotates values through dynamic shared memory, with the barrier the rotation needs.
__global__ void rotate_shared(const int *x, int *out) {
  extern __shared__ int buffer[];
  const int tid = threadIdx.x;
  buffer[tid] = x[tid];
  __syncthreads();
  out[tid] = buffer[(tid + 1) % blockDim.x];
}

// The same rotation without the barrier: a race that thread order exposes.
__global__ void rotate_shared_racy(const int *x, int *out) {
  __shared__ int buffer[64];
  const int tid = threadIdx.x;
  buffer[tid] = x[tid];
  out[tid] = buffer[(tid + 1) % blockDim.x];
}

// Reads shared memory it never wrote.
__global__ void uninitialised_shared(int *out) {
  __shared__ int counter;
  if (threadIdx.x == 0) counter += 1;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = counter;
}

// Lanes 16..31 skip a full-mask shuffle.
__global__ void divergent_shuffle(float *out) {
  float v = threadIdx.x;
  if (threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

// Half the block waits at one __syncthreads, half at another.
__global__ void divergent_syncthreads(int *out) {
  if (threadIdx.x < 32) {
    __syncthreads();
    out[threadIdx.x] = 1;
  } else {
    __syncthreads();
    out[threadIdx.x] = 2;
  }
}

// Ballot, shfl_up and a 16-wide shfl_idx.
__global__ void warp_votes(const int *x, unsigned *ballots, int *scan, int *broadcast) {
  const int lane = threadIdx.x;
  ballots[lane] = __ballot_sync(0xffffffffu, x[lane] > 0);
  int v = x[lane];
  for (int offset = 1; offset < 32; offset *= 2) {
    const int up = __shfl_up_sync(0xffffffffu, v, offset);
    if (lane >= offset) v += up;
  }
  scan[lane] = v;
  broadcast[lane] = __shfl_sync(0xffffffffu, x[lane], 3, 16);
}

// Kernel parameters of several sizes.
__global__ void scale(float *x, float factor, int n, long long offset) {
  const long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x + offset;
  if (i < n) x[i] *= factor;
}

// Reads one element past the end of x.
__global__ void out_of_bounds(const float *x, float *out, int n) {
  out[0] = x[n];
}

// Warp 1 spins until warp 0 has published its values behind a flag.
__global__ void flag_handoff(int *data, int *flag, int *out) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (warp == 0) {
    data[lane] = lane * 3;
    __threadfence();
    __syncwarp();
    if (lane == 0) atomicExch(flag, 1);
  } else {
    while (*(volatile int *)flag == 0) __nanosleep(10);
    __threadfence();
    out[lane] = data[lane];
  }
}

// Spins on a flag that nobody sets.
__global__ void spin_forever(int *flag) {
  while (*(volatile int *)flag == 0) __nanosleep(10);
}

// Overflows a signed int (undefined behaviour that UBSan reports).
__global__ void signed_overflow(int *x, int n) {
  x[0] += n;
}

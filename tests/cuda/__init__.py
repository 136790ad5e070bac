"""CUDA backend tests; none needs a GPU except those marked ``gpu``.

- test_compile: every kernel to cubin for every supported architecture with NVRTC (CuPy's
  runtime flags plus the loader's options); skipped without CuPy and NVRTC.
- test_emulator: the CUDA-semantics emulator (emulator/cuda_emulator.h) on kernels with known
  answers and known bugs.
- test_sgd_emulated: the unchanged csrc/cuda/sgd.cu in the emulator, through the backend's own
  launcher, in three thread orders and under ASan+UBSan.
- test_sgd_gpu: the backend on a real device (``gpu`` marker; skipped with the reason here).
- test_models_on_device: every model with ``backend="cuda"``, one body per test run on the
  emulator (CuPy replaced by host stand-ins) and on real CuPy (``gpu``; skipped here).
- test_zero_copy_emulated: MF and NMF fitted on device input (CuPy / cupyx stand-ins) keep the
  data on the device and equal the host-input models.
- test_benchmarks_emulated: the kernel-level GPU benchmark bodies run once, small, emulated.
"""

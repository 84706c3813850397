/* backend_cuda.h: what the CUDA backend offers beyond the Backend table (C callable).
 *
 * backend_cuda() itself is declared in engine/backend.h. These extras serve the
 * benchmark and the trainer's memory report: the peak of mem_used since the last
 * reset, and the device's name. */
#ifndef LEMO_BACKEND_CUDA_H
#define LEMO_BACKEND_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Highest mem_used seen since backend_cuda() or the last cuda_mem_reset_peak(). */
size_t cuda_mem_peak(void);
void cuda_mem_reset_peak(void);
/* "NVIDIA H100 80GB HBM3" etc.; "" before backend_cuda() succeeded. */
const char *cuda_device_name(void);

#ifdef __cplusplus
}
#endif

#endif

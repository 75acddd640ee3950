// The OpenCL 1.2 host API through the ICD loader.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

// OpenBLAS's CBLAS interface and its runtime queries (core name, thread count).
#include <cblas.h>

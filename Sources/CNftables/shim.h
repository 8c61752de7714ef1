#ifndef NETLAB_CNFTABLES_SHIM_H
#define NETLAB_CNFTABLES_SHIM_H
#include <nftables/libnftables.h>
#endif

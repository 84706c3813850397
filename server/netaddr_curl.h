/* netaddr_curl.h: the connect-time guard that keeps a libcurl transfer off internal addresses.
 *
 * URLs that clients name (a dataset import, a job's metadata.webhook_url) are fetched or posted
 * to by the server itself, so without a check a client could make it reach services only the
 * server's network can see (loopback daemons, the LAN, a cloud metadata endpoint). The guard is
 * curl's socket opener: it judges the address curl is about to connect to (netaddr_is_internal),
 * after DNS and after any redirect, so a name that resolves or re-resolves to an internal
 * address is caught too. One shared opener, so every guarded transfer refuses the same set.
 * Guarded transfers use no proxy (an environment's http_proxy included): the guard could only
 * judge the proxy's address, never the one the proxy goes on to. */
#ifndef LEMO_NETADDR_CURL_H
#define LEMO_NETADDR_CURL_H

#include <curl/curl.h>

typedef struct {
    int allow_internal;   // 1: no refusal (the operator allowed internal addresses)
    char refused[64];     // the last address refused as text, "" if none
    int opened;           // sockets opened to allowed addresses
} NetGuard;

/* Installs the guard on c; g must outlive the transfer. After curl_easy_perform, a transfer that
 * failed with g->refused set and g->opened == 0 reached nothing but internal addresses. */
void netaddr_curl_guard(CURL *c, NetGuard *g);

#endif

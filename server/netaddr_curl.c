/* netaddr_curl.c: curl's socket opener for guarded transfers (netaddr_curl.h says why). */
#include "netaddr_curl.h"

#include <sys/socket.h>

#include "netaddr.h"

/* Opens the socket curl asks for unless its address is internal and that is not allowed;
 * a refusal is remembered in the guard and curl sees a failed connect. */
static curl_socket_t guard_open(void *clientp, curlsocktype purpose, struct curl_sockaddr *a) {
    NetGuard *g = clientp;
    (void)purpose;
    if (!g->allow_internal && netaddr_is_internal(&a->addr)) {
        netaddr_format(&a->addr, g->refused, sizeof g->refused);
        return CURL_SOCKET_BAD;
    }
    curl_socket_t s = socket(a->family, a->socktype, a->protocol);
    if (s != CURL_SOCKET_BAD) g->opened++;
    return s;
}

void netaddr_curl_guard(CURL *c, NetGuard *g) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, guard_open);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, g);
    /* No proxy, whatever http_proxy / https_proxy / ALL_PROXY say: through one, the address
     * judged would be the proxy's, and the proxy would reach any address for us. "" turns
     * curl's proxy use off, the environment's included. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
}

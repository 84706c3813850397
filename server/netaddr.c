/* netaddr.c: the internal-address test of URLs that clients name (netaddr.h says why). */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* a: the IPv4 address in host byte order. */
static int v4_internal(uint32_t a) {
    uint8_t b0 = a >> 24, b1 = (a >> 16) & 0xFF;
    return b0 == 0 || b0 == 10 || b0 == 127 ||          // this network, private, loopback
           (b0 == 100 && (b1 & 0xC0) == 64) ||           // shared address space 100.64/10
           (b0 == 169 && b1 == 254) ||                   // link-local (cloud metadata)
           (b0 == 172 && (b1 & 0xF0) == 16) ||           // private 172.16/12
           (b0 == 192 && b1 == 168) ||                   // private 192.168/16
           b0 >= 224;                                    // multicast, reserved, broadcast
}

int netaddr_is_internal(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return v4_internal(ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr));
    if (sa->sa_family != AF_INET6) return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    if (!memcmp(b, mapped, 12)) return v4_internal((uint32_t)b[12] << 24 | (uint32_t)b[13] << 16 | b[14] << 8 | b[15]);
    int zero_prefix = 1;
    for (int i = 0; i < 15; i++) zero_prefix &= b[i] == 0;
    return (zero_prefix && b[15] <= 1) ||    // :: and ::1
           (b[0] & 0xFE) == 0xFC ||           // unique-local fc00::/7
           (b[0] == 0xFE && (b[1] & 0x80)) ||  // link-local fe80::/10, old site-local fec0::/10
           b[0] == 0xFF;                      // multicast
}

void netaddr_format(const struct sockaddr *sa, char *buf, size_t cap) {
    const void *a = sa->sa_family == AF_INET ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                                             : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6) || !inet_ntop(sa->sa_family, a, buf, (socklen_t)cap))
        snprintf(buf, cap, "(address family %d)", sa->sa_family);
}

int netaddr_url_host_internal(const char *url, char *buf, size_t cap) {
    const char *p = strstr(url, "://");
    if (!p) return 0;
    p += 3;
    size_t n = strcspn(p, "/?#");                        // the authority
    const char *at = memrchr(p, '@', n);
    if (at) { n -= (size_t)(at + 1 - p); p = at + 1; }   // past the userinfo
    char host[256];
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (*p == '[') {
        const char *end = memchr(p, ']', n);
        if (!end) return 0;
        size_t len = strcspn(p + 1, "%]");                // without a zone id ("%25eth0")
        if (len >= sizeof host) return 0;
        memcpy(host, p + 1, len);
        host[len] = 0;
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return 0;
    } else {
        const char *colon = memchr(p, ':', n);
        size_t len = colon ? (size_t)(colon - p) : n;
        if (!len || len >= sizeof host) return 0;
        memcpy(host, p, len);
        host[len] = 0;
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        if (!inet_aton(host, &a->sin_addr)) return 0;    // also the short and numeric forms
    }
    if (!netaddr_is_internal((const struct sockaddr *)&ss)) return 0;
    netaddr_format((const struct sockaddr *)&ss, buf, cap);
    return 1;
}

/* netaddr.h: which socket addresses a URL that a client names must not reach by default.
 *
 * A dataset import by URL and a job's metadata.webhook_url make the server connect where a
 * client says; without a check a client could make it reach services that only the server's
 * network can see (loopback daemons, the LAN, a cloud metadata endpoint at 169.254.169.254).
 * The check runs on the address curl is about to connect to, after DNS and after every
 * redirect (netaddr_curl.h), so a name that resolves (or re-resolves) to an internal address
 * is caught too; a URL whose host is a literal internal IP can be refused up front. */
#ifndef LEMO_NETADDR_H
#define LEMO_NETADDR_H

#include <stddef.h>
#include <sys/socket.h>

/* 1 for loopback, unspecified, private (RFC 1918, IPv6 unique-local), shared (100.64/10),
 * link-local (and IPv6 site-local), multicast and broadcast addresses, IPv4-mapped IPv6 judged as IPv4; 1 too for
 * any family but IPv4 and IPv6. */
int netaddr_is_internal(const struct sockaddr *sa);

/* The address as text ("10.0.0.1", "::1") into buf. */
void netaddr_format(const struct sockaddr *sa, char *buf, size_t cap);

/* 1 when the host of URL ("scheme://[userinfo@]host[:port]...") is a literal IP address that
 * netaddr_is_internal refuses: IPv4 in any form the resolver takes ("127.0.0.1", "127.1",
 * "2130706433") or a bracketed IPv6 ("[::1]"); the address as text into buf. 0 for a host name
 * (judged only when connecting, since its DNS answer can change) or an external address. */
int netaddr_url_host_internal(const char *url, char *buf, size_t cap);

#endif

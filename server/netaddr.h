/* netaddr.h: which socket addresses a URL import must not reach by default.
 *
 * A dataset import by URL makes the server fetch what a client names; without a check a
 * client could make it read services that only the server's network can see (loopback
 * daemons, the LAN, a cloud metadata endpoint at 169.254.169.254). The check runs on the
 * address curl is about to connect to, after DNS and after every redirect, so a name that
 * resolves (or re-resolves) to an internal address is caught too. */
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

#endif

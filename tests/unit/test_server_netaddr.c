/* test_server_netaddr.c: which addresses a URL import refuses by default (netaddr.h):
 * loopback, private, shared, link-local, multicast, unspecified, in IPv4, IPv6 and
 * IPv4-mapped IPv6, and not the public ones around those ranges. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "check.h"
#include "netaddr.h"

static void expect(const char *text, int internal) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    int ok;
    if (strchr(text, ':')) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        ok = inet_pton(AF_INET6, text, &a->sin6_addr) == 1;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        ok = inet_pton(AF_INET, text, &a->sin_addr) == 1;
    }
    CHECK(ok, "test address %s parses", text);
    CHECK(netaddr_is_internal((const struct sockaddr *)&ss) == internal, "%s should be %s", text,
          internal ? "internal" : "public");
    char back[64];
    netaddr_format((const struct sockaddr *)&ss, back, sizeof back);
    CHECK(!strcmp(back, text), "format %s gave %s", text, back);
}

int main(void) {
    const char *internal[] = {"127.0.0.1", "127.255.0.9", "10.1.2.3", "172.16.0.1", "172.31.255.254",
                              "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.127.255.255", "0.0.0.0",
                              "224.0.0.1", "255.255.255.255", "::1", "::", "fc00::1", "fd12:3456::1",
                              "fe80::1", "fec0::1", "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"};
    const char *public_[] = {"8.8.8.8", "1.1.1.1", "172.15.255.255", "172.32.0.1", "192.167.1.1",
                             "100.63.255.255", "100.128.0.1", "169.253.1.1", "11.0.0.1", "223.255.255.254",
                             "2001:4860:4860::8888", "2606:4700::1111", "::ffff:8.8.8.8", "fe7f::1"};
    for (size_t i = 0; i < sizeof internal / sizeof internal[0]; i++) expect(internal[i], 1);
    for (size_t i = 0; i < sizeof public_ / sizeof public_[0]; i++) expect(public_[i], 0);
    struct sockaddr other = {.sa_family = AF_UNIX};
    CHECK(netaddr_is_internal(&other) == 1, "other address families are refused");
    return check_done("test_server_netaddr");
}

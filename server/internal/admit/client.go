package admit

import (
	"net/netip"
	"strings"
)

// clientAddr returns the address a request's limits are counted under:
// the peer's, unless the peer is a trusted proxy, in which case X-Real-IP
// if it holds an address, else the right-most address of X-Forwarded-For
// that is not itself a trusted proxy (the left part of that header is
// whatever the client wrote). An IPv6 address is reduced to its /64. The
// zero Addr means the peer is not an IP address: no limit applies.
func clientAddr(src Source, trusted []netip.Prefix) netip.Addr {
	ip := parseIP(src.Peer())
	if !ip.IsValid() {
		return ip
	}
	if isTrusted(ip, trusted) {
		if a := parseIP(strings.TrimSpace(src.Header("X-Real-Ip"))); a.IsValid() {
			ip = a
		} else if xff := src.Header("X-Forwarded-For"); xff != "" {
			ip = forwardedFor(xff, ip, trusted)
		}
	}
	if ip.Is6() {
		ip = netip.PrefixFrom(ip, 64).Masked().Addr()
	}
	return ip
}

// forwardedFor walks X-Forwarded-For from the right, past trusted
// proxies, and returns the first address that is not one; peer if none.
func forwardedFor(xff string, peer netip.Addr, trusted []netip.Prefix) netip.Addr {
	for xff != "" {
		i := strings.LastIndexByte(xff, ',')
		a := parseIP(strings.TrimSpace(xff[i+1:]))
		if !a.IsValid() {
			return peer // not ours to read further
		}
		peer = a
		if !isTrusted(a, trusted) {
			return a
		}
		if i < 0 {
			break
		}
		xff = xff[:i]
	}
	return peer
}

// parseIP reads "ip", "ip:port" or "[ipv6]:port"; IPv4-mapped IPv6 is
// unmapped. The zero Addr if it is none of these.
func parseIP(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone("")
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone("")
	}
	return netip.Addr{}
}

func isTrusted(ip netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// ParsePrefixes parses a comma-separated list of CIDRs or addresses (an
// address is its own /32 or /128), as -trusted-proxies takes it.
func ParsePrefixes(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			a, err := netip.ParseAddr(f)
			if err != nil {
				return nil, err
			}
			out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
			continue
		}
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

package server

import (
	"net/netip"

	"wall/server/internal/admit"
)

// ParsePrefixes parses a comma-separated list of CIDRs or addresses, as
// Config.TrustedProxies takes them (main's -trusted-proxies).
func ParsePrefixes(list string) ([]netip.Prefix, error) { return admit.ParsePrefixes(list) }

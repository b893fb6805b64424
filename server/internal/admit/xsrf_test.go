package admit

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
)

// DecodeXSRF agrees with the straightforward decoding it replaced
// (split, hex.DecodeString, xor), on any input.
func FuzzDecodeXSRF(f *testing.F) {
	ref := func(v string) []byte {
		if v == "" {
			return nil
		}
		if !strings.HasPrefix(v, "2|") {
			return []byte(v)
		}
		parts := strings.Split(v, "|")
		if len(parts) != 4 {
			return nil
		}
		mask, err1 := hex.DecodeString(parts[1])
		masked, err2 := hex.DecodeString(parts[2])
		if err1 != nil || err2 != nil || len(mask) == 0 || len(masked) == 0 {
			return nil
		}
		return xorMask(mask, masked)
	}
	for _, s := range []string{"", "abc", "2|", "2|a|b|c", "2|0a0b0c0d|00112233445566778899aabbccddeeff|1700000000",
		"2|0A|ff|1", "2|0a0|ff|1", "2|0a|f|1", "2|0a|ff|1|2", "2||ff|1", "2|0a||1", "2|zz|ff|1", "2|0a|ff|"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if got, want := DecodeXSRF(v), ref(v); !bytes.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("DecodeXSRF(%q) = %x, want %x", v, got, want)
		}
	})
}

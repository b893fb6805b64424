// Package deploy_test checks the deployment files: the systemd unit with
// systemd-analyze (where it is installed), the TLS example with nginx -t.
package deploy_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The unit passes `systemd-analyze verify` with no warning: every key is
// known to this systemd and every value parses. ExecStart's binary and the
// environment file are those of a host where wall is installed, so they
// are pointed at files that exist here. The test skips where systemd is
// not installed (CI installs nothing for it).
func TestSystemdUnitVerifies(t *testing.T) {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	unit, err := os.ReadFile("wall@.service")
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable() // some executable that exists
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	env := filepath.Join(dir, "wall.env")
	if err := os.WriteFile(env, []byte("REDIS_URL=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(unit), "ExecStart=/usr/local/bin/wall ", "ExecStart="+self+" ")
	text = strings.ReplaceAll(text, "EnvironmentFile=/etc/wall/wall.env", "EnvironmentFile="+env)
	if text == string(unit) {
		t.Fatal("the unit's ExecStart or EnvironmentFile moved: update this test")
	}
	if err := os.WriteFile(filepath.Join(dir, "wall@.service"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	// verify prints unknown keys and unparsable values as warnings and
	// still exits 0: any output is a failure.
	out, err := exec.Command(bin, "verify", filepath.Join(dir, "wall@7000.service")).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The hardening, as systemd scores it (lower is better; "OK" is below 4).
	if out, err := exec.Command(bin, "security", "--offline=yes", filepath.Join(dir, "wall@7000.service")).CombinedOutput(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Log(lines[len(lines)-1])
	}
}

// The TLS example is valid nginx configuration in the http {} block of the
// bundled nginx.conf's shared part (its map and upstream blocks), checked
// with `nginx -t` and a throwaway certificate.
func TestNginxTLSConfigParses(t *testing.T) {
	bin := ""
	for _, p := range []string{"nginx", "/usr/sbin/nginx"} {
		if b, err := exec.LookPath(p); err == nil {
			bin = b
			break
		}
	}
	if bin == "" {
		if os.Getenv("WALL_REQUIRE_INTEGRATION") == "1" {
			t.Fatal("nginx not found and WALL_REQUIRE_INTEGRATION=1")
		}
		t.Skip("nginx not installed")
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeSelfSigned(t, cert, key)
	main, err := os.ReadFile("../nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	_, shared, ok := strings.Cut(string(main), "# ---- copy from here into an existing http {} block ----")
	shared, _, ok2 := strings.Cut(shared, "# ---- to here ----")
	if !ok || !ok2 {
		t.Fatal("nginx.conf lost its copy markers: update this test")
	}
	tls, err := os.ReadFile("nginx-tls.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := strings.NewReplacer("/etc/letsencrypt/live/wall.example.com/fullchain.pem", cert,
		"/etc/letsencrypt/live/wall.example.com/privkey.pem", key).Replace(string(tls))
	conf := "daemon off;\npid nginx.pid;\nerror_log stderr warn;\nevents {}\nhttp {\n" +
		"client_body_temp_path body; proxy_temp_path proxy; fastcgi_temp_path fastcgi; uwsgi_temp_path uwsgi; scgi_temp_path scgi;\n" +
		shared + "\n" + site + "\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-t", "-p", dir, "-c", "nginx.conf", "-e", "stderr").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "test is successful") {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
}

// writeSelfSigned writes a throwaway certificate and key for localhost.
func writeSelfSigned(t *testing.T, certPath, keyPath string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
}

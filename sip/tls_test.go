package sip

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/stretchr/testify/require"
)

// selfSigned writes a certificate and key for 127.0.0.1 into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "vnum test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600))
	return certFile, keyFile
}

// TestTLSListener: with sip.tls_cert and sip.tls_key, the tls:// listen
// entries serve SIP over TLS; without them they are left out.
func TestTLSListener(t *testing.T) {
	t.Parallel()
	cert, key := selfSigned(t, t.TempDir())
	e := newTestEnv(t, "answer", func(o *Options) {
		o.Listen = append(o.Listen, "tls://127.0.0.1:0")
		o.TLSCert, o.TLSKey = cert, key
	})
	addr := netip.MustParseAddrPort(e.srv.Addr("tls"))

	ua, err := sipgo.NewUA(sipgo.WithUserAgenTLSConfig(&tls.Config{InsecureSkipVerify: true})) // a test certificate
	require.NoError(t, err)
	t.Cleanup(func() { _ = ua.Close() })
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname("127.0.0.1"))
	require.NoError(t, err)
	uri := sip.Uri{Scheme: "sip", User: testHost, Host: addr.Addr().String(), Port: int(addr.Port()), UriParams: sip.NewParams()}
	uri.UriParams.Add("transport", "tls")
	req := sip.NewRequest(sip.OPTIONS, uri)
	req.SetTransport("TLS")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := client.Do(ctx, req)
	require.NoError(t, err)
	require.Equal(t, 200, res.StatusCode)

	plain := newTestEnv(t, "answer", func(o *Options) { o.Listen = append(o.Listen, "tls://127.0.0.1:0") })
	require.Empty(t, plain.srv.Addr("tls"), "no certificate, no TLS listener")
}

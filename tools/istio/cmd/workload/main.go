// Command workload stands in for a workload asking istiod's CA for a certificate, so tests see what
// workloads really get: it calls IstioCertificateService/CreateCertificate on istiod's secure gRPC port
// (15012 in a cluster) and prints the answer as one JSON object.
//
// How it authenticates, and what istiod (istio.io/istio at the pseudo-version in go.mod) accepts:
//   - Sidecars log in with a Kubernetes token; outside a cluster there is none to review, so this
//     stand-in uses the other authenticator istiod always installs first, ClientCertAuthenticator
//     (security/pkg/server/ca/authenticate/cert_authenticator.go): the caller's identities are the URI
//     SANs of the leaf of the TLS client chain Go verified. istiod ignores the CSR's own SANs and signs
//     for those identities (security/pkg/server/ca/server.go, CreateCertificate).
//   - The secure port asks for a client certificate "if given" (tls.VerifyClientCertIfGiven) and verifies
//     it twice (pilot/pkg/bootstrap/server.go, initSecureDiscoveryService): Go's TLS stack against
//     ClientCAs (for client auth usage), then spiffe.PeerCertVerifier, which needs exactly one URI SAN,
//     maps its trust domain (the mesh's, "cluster.local" by default) to the roots and verifies with Go's
//     default key usage (server auth). So the client certificate carries one spiffe://<trust domain>/...
//     URI and both serverAuth and clientAuth, and the chain sent includes the intermediate(s).
//   - Those roots are root-cert.pem as istiod read it when it STARTED (createPeerCertVerifier runs once):
//     after a root change, clients whose certificates chain only to the new root are refused until istiod
//     restarts, while a new intermediate under the same root is accepted at once.
//
// The client certificate comes from --cert-dir (ca-key.pem + ca-cert.pem [+ cert-chain.pem]: a
// short-lived leaf is minted and signed there, as the current intermediate would sign one) or from
// --client-cert/--client-key (a ready pair, its chain in the cert file).
//
// Output: {"chain": [PEM, ...], "leaf": {...}, "serving": {...}}. "chain" is CreateCertificate's answer as
// istiod sent it: the leaf, the intermediates, and last the whole root-cert.pem as one element.
// "serving" is the chain istiod presented on the TLS handshake and whether it verified against --ca-roots.
// Exit 1 with a message on stderr on any failure (the gRPC status code included).
package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "istio.io/api/security/v1alpha1"
)

type options struct {
	addr       string
	serverName string
	spiffe     string
	ttl        time.Duration
	caRoots    string
	certDir    string
	clientCert string
	clientKey  string
	timeout    time.Duration
}

type certInfo struct {
	Subject   string   `json:"subject"`
	Issuer    string   `json:"issuer"`
	Serial    string   `json:"serial"`
	NotBefore string   `json:"notBefore"`
	NotAfter  string   `json:"notAfter"`
	URIs      []string `json:"uris,omitempty"`
	DNSNames  []string `json:"dnsNames,omitempty"`
}

type result struct {
	Chain   []string `json:"chain"`
	Leaf    certInfo `json:"leaf"`
	Serving struct {
		Chain    []string `json:"chain"`
		Leaf     certInfo `json:"leaf"`
		Verified bool     `json:"verified"`
	} `json:"serving"`
}

func main() {
	var o options
	fs := flag.NewFlagSet("workload", flag.ExitOnError)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:15012", "istiod's secure gRPC address")
	fs.StringVar(&o.serverName, "server-name", "istiod.istio-system.svc", "name istiod's serving certificate is checked for")
	fs.StringVar(&o.spiffe, "spiffe", "spiffe://cluster.local/ns/default/sa/workload", "identity of the workload (the client certificate's URI SAN)")
	fs.DurationVar(&o.ttl, "ttl", time.Hour, "requested certificate lifetime")
	fs.StringVar(&o.caRoots, "ca-roots", "", "PEM roots to verify istiod's serving certificate with (default: do not verify, only report)")
	fs.StringVar(&o.certDir, "cert-dir", "", "CA dir (ca-key.pem, ca-cert.pem, cert-chain.pem) to mint the client certificate from")
	fs.StringVar(&o.clientCert, "client-cert", "", "client certificate chain PEM (instead of --cert-dir)")
	fs.StringVar(&o.clientKey, "client-key", "", "client key PEM (with --client-cert)")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Second, "deadline for the whole exchange")
	_ = fs.Parse(os.Args[1:])

	out, err := run(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "workload: %v\n", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
}

func run(o options) (*result, error) {
	if (o.certDir == "") == (o.clientCert == "") {
		return nil, errors.New("give exactly one of --cert-dir or --client-cert/--client-key")
	}
	if _, err := url.Parse(o.spiffe); err != nil || !strings.HasPrefix(o.spiffe, "spiffe://") {
		return nil, fmt.Errorf("--spiffe %q is not a spiffe:// URI", o.spiffe)
	}
	var clientCert tls.Certificate
	var err error
	if o.certDir != "" {
		clientCert, err = mintClientCert(o.certDir, o.spiffe)
	} else {
		clientCert, err = tls.LoadX509KeyPair(o.clientCert, o.clientKey)
	}
	if err != nil {
		return nil, err
	}

	var roots *x509.CertPool
	if o.caRoots != "" {
		pemBytes, err := os.ReadFile(o.caRoots)
		if err != nil {
			return nil, err
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("no certificate in %s", o.caRoots)
		}
	}
	var out result
	tlsConfig := &tls.Config{
		// Always present it: with Certificates, Go's client silently sends none when the chain does not
		// match the CAs istiod lists as acceptable, which would hide istiod's own verdict on the handshake.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &clientCert, nil },
		MinVersion:           tls.VersionTLS12,
		// Verification is done below so that what istiod served can be reported even when it fails.
		InsecureSkipVerify: true, //nolint:gosec
		VerifyConnection: func(cs tls.ConnectionState) error {
			for _, c := range cs.PeerCertificates {
				out.Serving.Chain = append(out.Serving.Chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
			}
			if len(cs.PeerCertificates) == 0 {
				return errors.New("istiod presented no certificate")
			}
			out.Serving.Leaf = describe(cs.PeerCertificates[0])
			if roots == nil {
				return nil
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: o.serverName})
			if err != nil {
				return fmt.Errorf("istiod's serving certificate does not verify against %s: %v", o.caRoots, err)
			}
			out.Serving.Verified = true
			return nil
		},
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	conn, err := grpc.NewClient(o.addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig)))
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %v", o.addr, err)
	}
	defer conn.Close()

	csrPEM, err := newCSR(o.spiffe)
	if err != nil {
		return nil, err
	}
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(csrPEM),
		ValidityDuration: int64(o.ttl / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("CreateCertificate at %s: %v", o.addr, err)
	}
	if len(resp.CertChain) == 0 {
		return nil, errors.New("CreateCertificate returned an empty chain")
	}
	out.Chain = resp.CertChain
	leaf, err := parseFirst([]byte(resp.CertChain[0]))
	if err != nil {
		return nil, fmt.Errorf("parsing the returned leaf: %v", err)
	}
	out.Leaf = describe(leaf)
	return &out, nil
}

// mintClientCert signs a short-lived SPIFFE leaf with the CA dir's key, as a sidecar's certificate from
// the current intermediate would look, and returns it with its chain.
func mintClientCert(dir, spiffe string) (tls.Certificate, error) {
	caKeyPEM, err := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if err != nil {
		return tls.Certificate{}, err
	}
	caCertPEM, err := os.ReadFile(filepath.Join(dir, "ca-cert.pem"))
	if err != nil {
		return tls.Certificate{}, err
	}
	caCert, err := parseFirst(caCertPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing ca-cert.pem: %v", err)
	}
	caKey, err := parseKey(caKeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parsing ca-key.pem: %v", err)
	}
	uri, _ := url.Parse(spiffe)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	notAfter := now.Add(10 * time.Minute)
	if caCert.NotAfter.Before(notAfter) {
		notAfter = caCert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"workload stand-in"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		URIs:         []*url.URL{uri},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		// serverAuth too: istiod's PeerCertVerifier verifies with Go's default usage, which is serverAuth.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("signing the client certificate with %s: %v", dir, err)
	}
	chain := [][]byte{der, caCert.Raw}
	if chainPEM, err := os.ReadFile(filepath.Join(dir, "cert-chain.pem")); err == nil {
		for _, c := range parseAll(chainPEM) {
			if !c.Equal(caCert) && !isSelfSigned(c) {
				chain = append(chain, c.Raw)
			}
		}
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key}, nil
}

func newCSR(spiffe string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	uri, _ := url.Parse(spiffe)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{uri}}, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func parseKey(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if k, err := x509.ParsePKCS8PrivateKey(block.Bytes); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("PKCS#8 key is not a signer")
	}
	if k, err := x509.ParseECPrivateKey(block.Bytes); err == nil {
		return k, nil
	}
	return x509.ParsePKCS1PrivateKey(block.Bytes)
}

func parseFirst(pemBytes []byte) (*x509.Certificate, error) {
	certs := parseAll(pemBytes)
	if len(certs) == 0 {
		return nil, errors.New("no certificate")
	}
	return certs[0], nil
}

func parseAll(pemBytes []byte) []*x509.Certificate {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, pemBytes = pem.Decode(pemBytes)
		if block == nil {
			return out
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			out = append(out, c)
		}
	}
}

func isSelfSigned(c *x509.Certificate) bool {
	return c.CheckSignatureFrom(c) == nil
}

func describe(c *x509.Certificate) certInfo {
	info := certInfo{
		Subject:   c.Subject.String(),
		Issuer:    c.Issuer.String(),
		Serial:    fmt.Sprintf("%x", c.SerialNumber),
		NotBefore: c.NotBefore.UTC().Format(time.RFC3339),
		NotAfter:  c.NotAfter.UTC().Format(time.RFC3339),
		DNSNames:  c.DNSNames,
	}
	for _, u := range c.URIs {
		info.URIs = append(info.URIs, u.String())
	}
	return info
}

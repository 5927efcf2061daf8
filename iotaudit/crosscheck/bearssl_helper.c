/*
 * iotaudit BearSSL helper: asks BearSSL's X.509 "minimal" engine, set up exactly as
 * br_ssl_client_init_full() sets it up for a TLS client (src/ssl/ssl_client_full.c), whether a
 * served chain validates against trust anchors at a given time and server name.
 *
 * Built on first use by iotaudit/crosscheck/_bearssl.py (gcc ... -lbearssl) and driven over
 * stdin/stdout. All integers are unsigned 32-bit big-endian.
 *
 *   'I'                                   -> u32 len, bytes: path of the loaded libbearssl
 *   'A' id n {len der}*n                  -> u32 bad (1-based store index, 0 if none), u32 err
 *        define trust-anchor set <id> from certificates, as brssl's tools/certs.c turns a
 *        certificate into a br_x509_trust_anchor: subject DN, public key, and BR_X509_TA_CA when
 *        the certificate is a CA (br_x509_decoder_isCA). Nothing else is kept: no dates.
 *   'V' id hostlen host days secs n {len der}*n   (hostlen 0xFFFFFFFF: no server name)
 *                                         -> u32 err (0 = trusted), u32 at (0-based index of the
 *                                            certificate being processed when the error was
 *                                            raised, n when it was raised by end_chain)
 *        the certificates are pushed in served order, like the SSL engine does with the
 *        Certificate message: start_chain(server_name), start_cert/append/end_cert each, end_chain.
 *   'H' id hostlen host days secs port    -> u32 err (br_ssl_engine_last_error, 0 = handshake done), u32 0
 *        the same question through a real BearSSL TLS client handshake with 127.0.0.1:<port>
 *        (br_ssl_client_reset with the server name, one application byte written): the tests use
 *        it to prove that 'V' decides as the handshake does.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bearssl.h>

typedef struct {
	br_x509_trust_anchor *tas;
	size_t num;
	int defined;
} anchor_set;

static anchor_set *sets;
static size_t sets_len;

static void die(const char *what)
{
	fprintf(stderr, "bearssl_helper: %s\n", what);
	exit(2);
}

static void *xmalloc(size_t len)
{
	void *p = malloc(len ? len : 1);
	if (p == NULL)
		die("out of memory");
	return p;
}

static void read_exact(void *buf, size_t len)
{
	if (len && fread(buf, 1, len, stdin) != len)
		die("truncated request");
}

static uint32_t read_u32(void)
{
	unsigned char b[4];
	read_exact(b, 4);
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

static void write_u32(uint32_t v)
{
	unsigned char b[4] = { v >> 24, v >> 16, v >> 8, v };
	if (fwrite(b, 1, 4, stdout) != 4)
		die("cannot write reply");
}

static unsigned char *read_blob(uint32_t *len)
{
	unsigned char *buf;
	*len = read_u32();
	if (*len > (64u << 20))
		die("certificate larger than 64 MiB");
	buf = xmalloc(*len);
	read_exact(buf, *len);
	return buf;
}

typedef struct {
	unsigned char *buf;
	size_t len;
} dn_buffer;

static void dn_append(void *ctx, const void *data, size_t len)
{
	dn_buffer *dn = ctx;
	unsigned char *grown = realloc(dn->buf, dn->len + len);
	if (grown == NULL)
		die("out of memory");
	memcpy(grown + dn->len, data, len);
	dn->buf = grown;
	dn->len += len;
}

static unsigned char *copy(const unsigned char *src, size_t len)
{
	unsigned char *dst = xmalloc(len);
	memcpy(dst, src, len);
	return dst;
}

/* One certificate -> one trust anchor; returns 0 or a BR_ERR_X509_* code. */
static int to_anchor(const unsigned char *der, size_t len, br_x509_trust_anchor *ta)
{
	br_x509_decoder_context dc;
	br_x509_pkey *pk;
	dn_buffer dn = { NULL, 0 };
	int err;

	br_x509_decoder_init(&dc, dn_append, &dn);
	br_x509_decoder_push(&dc, der, len);
	pk = br_x509_decoder_get_pkey(&dc);
	if (pk == NULL) {
		err = br_x509_decoder_last_error(&dc);
		free(dn.buf);
		return err ? err : BR_ERR_X509_UNSUPPORTED;
	}
	ta->dn.data = dn.buf;
	ta->dn.len = dn.len;
	ta->flags = br_x509_decoder_isCA(&dc) ? BR_X509_TA_CA : 0;
	ta->pkey.key_type = pk->key_type;
	if (pk->key_type == BR_KEYTYPE_RSA) {
		ta->pkey.key.rsa.n = copy(pk->key.rsa.n, pk->key.rsa.nlen);
		ta->pkey.key.rsa.nlen = pk->key.rsa.nlen;
		ta->pkey.key.rsa.e = copy(pk->key.rsa.e, pk->key.rsa.elen);
		ta->pkey.key.rsa.elen = pk->key.rsa.elen;
	} else if (pk->key_type == BR_KEYTYPE_EC) {
		ta->pkey.key.ec.curve = pk->key.ec.curve;
		ta->pkey.key.ec.q = copy(pk->key.ec.q, pk->key.ec.qlen);
		ta->pkey.key.ec.qlen = pk->key.ec.qlen;
	} else {
		free(dn.buf);
		return BR_ERR_X509_UNSUPPORTED;
	}
	return 0;
}

static void define_set(void)
{
	uint32_t id = read_u32(), n = read_u32(), i, bad = 0, err = 0;
	anchor_set *set;

	if (id >= sets_len) {
		size_t grown = id + 16;
		sets = realloc(sets, grown * sizeof *sets);
		if (sets == NULL)
			die("out of memory");
		memset(sets + sets_len, 0, (grown - sets_len) * sizeof *sets);
		sets_len = grown;
	}
	set = &sets[id];
	if (set->defined)
		die("anchor set defined twice");
	set->tas = xmalloc(n * sizeof *set->tas);
	set->num = 0;
	set->defined = 1;
	for (i = 0; i < n; i++) {
		uint32_t len;
		unsigned char *der = read_blob(&len);
		if (bad == 0) {
			int e = to_anchor(der, len, &set->tas[set->num]);
			if (e) {
				bad = i + 1;
				err = (uint32_t)e;
			} else {
				set->num++;
			}
		}
		free(der);
	}
	write_u32(bad);
	write_u32(err);
}

static br_ssl_client_context client;
static br_x509_minimal_context xc;

static void verify(void)
{
	uint32_t id = read_u32(), hostlen = read_u32(), days, secs, n, i, at;
	char *host = NULL;
	const br_x509_class **vt;
	unsigned err;

	if (hostlen != 0xFFFFFFFFu) {
		if (hostlen > 1024)
			die("server name too long");
		host = xmalloc(hostlen + 1);
		read_exact(host, hostlen);
		host[hostlen] = 0;
	}
	days = read_u32();
	secs = read_u32();
	n = read_u32();
	if (id >= sets_len || !sets[id].defined)
		die("unknown anchor set");

	/* Exactly the TLS client's X.509 set-up (hash, RSA and ECDSA implementations). */
	br_ssl_client_init_full(&client, &xc, sets[id].tas, sets[id].num);
	br_x509_minimal_set_time(&xc, days, secs);
	vt = &xc.vtable;
	(*vt)->start_chain(vt, host);
	at = n;
	for (i = 0; i < n; i++) {
		uint32_t len;
		unsigned char *der = read_blob(&len);
		(*vt)->start_cert(vt, len);
		(*vt)->append(vt, der, len);
		(*vt)->end_cert(vt);
		/* err is BR_ERR_X509_OK (32) once a trust anchor was reached: not an error. */
		if (at == n && xc.err != 0 && xc.err != BR_ERR_X509_OK)
			at = i;
		free(der);
	}
	err = (*vt)->end_chain(vt);
	write_u32(err);
	write_u32(err ? at : 0);
	free(host);
}

static int sock_read(void *ctx, unsigned char *buf, size_t len)
{
	for (;;) {
		ssize_t r = read(*(int *)ctx, buf, len);
		if (r < 0 && errno == EINTR)
			continue;
		return r <= 0 ? -1 : (int)r;
	}
}

static int sock_write(void *ctx, const unsigned char *buf, size_t len)
{
	for (;;) {
		ssize_t w = write(*(int *)ctx, buf, len);
		if (w < 0 && errno == EINTR)
			continue;
		return w <= 0 ? -1 : (int)w;
	}
}

static unsigned char iobuf[BR_SSL_BUFSIZE_BIDI];

static void handshake(void)
{
	uint32_t id = read_u32(), hostlen = read_u32(), days, secs, port;
	char *host = NULL;
	struct sockaddr_in addr;
	br_sslio_context ioc;
	int fd, err;

	if (hostlen != 0xFFFFFFFFu) {
		if (hostlen > 1024)
			die("server name too long");
		host = xmalloc(hostlen + 1);
		read_exact(host, hostlen);
		host[hostlen] = 0;
	}
	days = read_u32();
	secs = read_u32();
	port = read_u32();
	if (id >= sets_len || !sets[id].defined)
		die("unknown anchor set");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_port = htons((uint16_t)port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
		die("cannot connect to 127.0.0.1");
	br_ssl_client_init_full(&client, &xc, sets[id].tas, sets[id].num);
	br_x509_minimal_set_time(&xc, days, secs);
	br_ssl_engine_set_buffer(&client.eng, iobuf, sizeof iobuf, 1);
	br_ssl_client_reset(&client, host, 0);
	br_sslio_init(&ioc, &client.eng, sock_read, &fd, sock_write, &fd);
	if (br_sslio_write_all(&ioc, "x", 1) == 0)
		br_sslio_flush(&ioc);
	err = br_ssl_engine_last_error(&client.eng);
	if (err == 0)
		br_sslio_close(&ioc);
	close(fd);
	write_u32((uint32_t)err);
	write_u32(0);
	free(host);
}

static void info(void)
{
	Dl_info dl;
	const char *path = "unknown";
	if (dladdr((void *)&br_ssl_client_init_full, &dl) && dl.dli_fname)
		path = dl.dli_fname;
	write_u32((uint32_t)strlen(path));
	fwrite(path, 1, strlen(path), stdout);
}

int main(void)
{
	int c;
	while ((c = getchar()) != EOF) {
		switch (c) {
		case 'I': info(); break;
		case 'A': define_set(); break;
		case 'V': verify(); break;
		case 'H': handshake(); break;
		default: die("unknown request");
		}
	}
	if (fflush(stdout) != 0)
		die("cannot write reply");
	return 0;
}

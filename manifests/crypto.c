/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The OpenSSL adapter: TUF keys and signatures, target hashes, private keys
 * for publishing. The only file of oob that includes OpenSSL headers; every
 * OpenSSL failure is translated here, once, into the errno vocabulary of
 * lib/lib.h, and OpenSSL's error queue is emptied before returning.
 *
 * Schemes (TUF 1.0 / securesystemslib names):
 *   ed25519              keyval.public: 64 hex chars (raw public key); pure
 *                        Ed25519 over the message.
 *   ecdsa-sha2-nistp256  keytype "ecdsa" (or the older "ecdsa-sha2-nistp256"),
 *                        keyval.public: PEM SubjectPublicKeyInfo on P-256;
 *                        signature: DER ECDSA-Sig-Value over SHA-256.
 *   rsassa-pss-sha256    keytype "rsa", keyval.public: PEM SubjectPublicKeyInfo;
 *                        RSASSA-PSS, SHA-256, MGF1-SHA-256.
 *
 * RSA-PSS salt length: we sign with salt length = digest length (32), as
 * securesystemslib's CryptoSigner does (PSS.DIGEST_LENGTH). We verify with
 * the salt length recovered from the signature (RSA_PSS_SALTLEN_AUTO), as
 * securesystemslib's SSlibKey (PSS.AUTO) and tuf-js (Node's default for
 * verification) do, so that signatures made with the maximal salt (Node's
 * and some HSMs' default when signing) verify as well. PSS's security does
 * not rest on the verifier knowing the salt length.
 */

#include <assert.h>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "manifests-internal.h"

/* PEM public keys above this are refused (an RSA-16384 key is ~2.8 KiB). */
#define PUBLIC_KEY_MAX 16384U
/* Private key PEM files above this are refused. */
#define PRIVATE_KEY_PEM_MAX 65536U
/* RSA moduli below this are not trusted (securesystemslib generates 3072). */
#define RSA_BITS_MIN 2048
#define RSA_BITS_GENERATE 3072

static const char *const tuf_key_type_table[_TUF_KEY_TYPE_MAX] = {
        [TUF_KEY_ED25519] = "ed25519",
        [TUF_KEY_ECDSA_P256] = "ecdsa-sha2-nistp256",
        [TUF_KEY_RSA_PSS_SHA256] = "rsassa-pss-sha256",
};

DEFINE_STRING_TABLE_LOOKUP(tuf_key_type, TufKeyType);

/* ---- OpenSSL glue --------------------------------------------------------- */

static inline void evp_pkey_freep(EVP_PKEY **p) {
        EVP_PKEY_free(*p);
}
static inline void evp_md_ctx_freep(EVP_MD_CTX **p) {
        EVP_MD_CTX_free(*p);
}
static inline void bio_freep(BIO **p) {
        BIO_free(*p);
}
#define _cleanup_pkey_ _cleanup_(evp_pkey_freep)
#define _cleanup_md_ctx_ _cleanup_(evp_md_ctx_freep)
#define _cleanup_bio_ _cleanup_(bio_freep)

/*
 * Translate OpenSSL's error queue into our vocabulary and empty it: an
 * allocation failure anywhere in the queue is -ENOMEM, anything else is the
 * caller's meaning of the failure (-EBADMSG, -EKEYREJECTED, -EPROTO...).
 */
static int openssl_error(int fallback) {
        unsigned long e, first = 0;
        bool oom = false;

        while ((e = ERR_get_error()) != 0) {
                if (first == 0)
                        first = e;
                if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE)
                        oom = true;
        }
        if (first != 0 && log_get_max_level() >= LOG_LEVEL_DEBUG) {
                char buf[256];
                ERR_error_string_n(first, buf, sizeof(buf));
                log_debug("OpenSSL: %s", buf);
        }
        return oom ? -ENOMEM : fallback;
}

/* Refuse a string with an embedded NUL or over a length cap. */
static const char *json_plain_string(const json_t *v, size_t max) {
        const char *s = json_string_value(v);

        if (!s)
                return NULL;
        if (strlen(s) != json_string_length(v) || json_string_length(v) > max)
                return NULL;
        return s;
}

/* ---- public keys ------------------------------------------------------------ */

/* The (keytype, scheme) pairs we verify. Anything else is a key type the
 * specification lets a root list and a client skip. */
static TufKeyType key_type_classify(const char *keytype, const char *scheme) {
        if (streq(scheme, "ed25519") && streq(keytype, "ed25519"))
                return TUF_KEY_ED25519;
        if (streq(scheme, "ecdsa-sha2-nistp256") &&
            (streq(keytype, "ecdsa") || streq(keytype, "ecdsa-sha2-nistp256")))
                return TUF_KEY_ECDSA_P256;
        if (streq(scheme, "rsassa-pss-sha256") && streq(keytype, "rsa"))
                return TUF_KEY_RSA_PSS_SHA256;
        return _TUF_KEY_TYPE_INVALID;
}

void tuf_key_done(TufKey *k) {
        if (!k)
                return;
        free(k->keyid);
        free(k->keytype);
        free(k->scheme);
        free(k->public);
        *k = (TufKey){.type = _TUF_KEY_TYPE_INVALID};
}

int tuf_key_from_json(const char *keyid, const json_t *o, TufKey *ret) {
        _cleanup_free_ char *id = NULL, *kt = NULL, *sch = NULL, *pub = NULL;
        const char *keytype, *scheme, *public;
        const json_t *keyval;
        TufKeyType type;

        assert_return(o, -EINVAL);
        assert_return(ret, -EINVAL);

        if (keyid && (keyid[0] == 0 || strlen(keyid) > TUF_KEYID_MAX))
                return -EPROTO;
        if (!json_is_object(o))
                return -EPROTO;

        keytype = json_plain_string(json_object_get(o, "keytype"), 256);
        scheme = json_plain_string(json_object_get(o, "scheme"), 256);
        if (!keytype || !scheme)
                return -EPROTO;

        /* Before looking at keyval: an unknown key type may shape it differently. */
        type = key_type_classify(keytype, scheme);
        if (type < 0) {
                log_debug("Unsupported key type '%s' with scheme '%s'", keytype, scheme);
                return -EOPNOTSUPP;
        }

        keyval = json_object_get(o, "keyval");
        if (!json_is_object(keyval))
                return -EPROTO;
        public = json_plain_string(json_object_get(keyval, "public"), PUBLIC_KEY_MAX);
        if (!public || public[0] == 0)
                return -EPROTO;

        if (keyid) {
                id = strdup(keyid);
                if (!id)
                        return -ENOMEM;
        }
        kt = strdup(keytype);
        sch = strdup(scheme);
        pub = strdup(public);
        if (!kt || !sch || !pub)
                return -ENOMEM;

        /* Unknown members of the key object (e.g. "keyid_hash_algorithms" of
         * old python-tuf) are not kept: the key is identified by the keyid its
         * delegator lists, never by recomputing it. */
        *ret = (TufKey){
                .keyid = TAKE_PTR(id),
                .type = type,
                .keytype = TAKE_PTR(kt),
                .scheme = TAKE_PTR(sch),
                .public = TAKE_PTR(pub),
        };
        return 0;
}

int tuf_key_to_json(const TufKey *k, json_t **ret) {
        json_t *o;

        assert_return(k && k->keytype && k->scheme && k->public, -EINVAL);
        assert_return(ret, -EINVAL);

        o = json_pack("{s:s, s:s, s:{s:s}}", "keytype", k->keytype, "scheme", k->scheme, "keyval", "public",
                      k->public);
        if (!o)
                return -ENOMEM; /* the strings came from a parsed document: valid UTF-8 */
        *ret = o;
        return 0;
}

static int sha256_hex(const void *data, size_t size, char **ret) {
        uint8_t md[32];
        unsigned md_len = 0;
        char *hex;

        if (EVP_Digest(data, size, md, &md_len, EVP_sha256(), NULL) != 1)
                return openssl_error(-ENOMEM);
        assert(md_len == sizeof(md));
        hex = hexmem(md, sizeof(md));
        if (!hex)
                return -ENOMEM;
        *ret = hex;
        return 0;
}

int tuf_key_compute_keyid(const TufKey *k, char **ret) {
        _cleanup_json_ json_t *o = NULL;
        _cleanup_free_ char *canonical = NULL;
        size_t size;
        int r;

        assert_return(k, -EINVAL);
        assert_return(ret, -EINVAL);

        r = tuf_key_to_json(k, &o);
        if (r < 0)
                return r;
        r = tuf_json_canonical(o, &canonical, &size);
        if (r < 0)
                return r;
        return sha256_hex(canonical, size, ret);
}

static int pkey_from_pem_public(const char *pem, EVP_PKEY **ret) {
        _cleanup_bio_ BIO *bio = NULL;
        size_t n = strlen(pem);
        EVP_PKEY *pkey;

        if (n > PUBLIC_KEY_MAX)
                return -EKEYREJECTED;
        bio = BIO_new_mem_buf(pem, (int) n);
        if (!bio)
                return openssl_error(-ENOMEM);
        pkey = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
        if (!pkey)
                return openssl_error(-EKEYREJECTED);
        *ret = pkey;
        return 0;
}

static bool pkey_is_p256(EVP_PKEY *pkey) {
        char name[64];
        size_t len = 0;
        int nid;

        if (!EVP_PKEY_is_a(pkey, "EC"))
                return false;
        /* Keys with explicit curve parameters have no group name: refused. */
        if (EVP_PKEY_get_group_name(pkey, name, sizeof(name), &len) != 1)
                return false;
        nid = OBJ_sn2nid(name);
        if (nid == NID_undef)
                nid = EC_curve_nist2nid(name);
        return nid == NID_X9_62_prime256v1;
}

static bool pkey_is_rsa(EVP_PKEY *pkey) {
        return EVP_PKEY_is_a(pkey, "RSA") && EVP_PKEY_get_bits(pkey) >= RSA_BITS_MIN;
}

/* The usable public key of k, or -EKEYREJECTED when the key material does
 * not parse or is not of the type the key object declares. */
static int key_load_public(const TufKey *k, EVP_PKEY **ret) {
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;
        int r;

        switch (k->type) {

        case TUF_KEY_ED25519: {
                _cleanup_free_ void *raw = NULL;
                size_t raw_size = 0;

                if (strlen(k->public) != 64)
                        return -EKEYREJECTED;
                r = unhexmem(k->public, 64, &raw, &raw_size);
                if (r == -ENOMEM)
                        return r;
                if (r < 0)
                        return -EKEYREJECTED;
                pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, raw, raw_size);
                if (!pkey)
                        return openssl_error(-EKEYREJECTED);
                break;
        }

        case TUF_KEY_ECDSA_P256:
                r = pkey_from_pem_public(k->public, &pkey);
                if (r < 0)
                        return r;
                if (!pkey_is_p256(pkey))
                        return openssl_error(-EKEYREJECTED);
                break;

        case TUF_KEY_RSA_PSS_SHA256:
                r = pkey_from_pem_public(k->public, &pkey);
                if (r < 0)
                        return r;
                if (!pkey_is_rsa(pkey))
                        return openssl_error(-EKEYREJECTED);
                break;

        default:
                return -EOPNOTSUPP;
        }

        *ret = TAKE_PTR(pkey);
        return 0;
}

/* Scheme parameters on a DigestSign/DigestVerify context. */
static int setup_pss(EVP_PKEY_CTX *pctx, int saltlen) {
        if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) <= 0 ||
            EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) <= 0 ||
            EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, saltlen) <= 0)
                return openssl_error(-ENOMEM);
        return 0;
}

/* The digest the scheme hashes the message with; NULL for pure Ed25519. */
static const EVP_MD *scheme_digest(TufKeyType type) {
        return type == TUF_KEY_ED25519 ? NULL : EVP_sha256();
}

int tuf_key_verify(const TufKey *k, const void *msg, size_t msg_size, const void *sig, size_t sig_size) {
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;
        _cleanup_md_ctx_ EVP_MD_CTX *ctx = NULL;
        EVP_PKEY_CTX *pctx = NULL; /* owned by ctx */
        int r;

        assert_return(k && k->public, -EINVAL);
        assert_return(msg || msg_size == 0, -EINVAL);
        assert_return(sig || sig_size == 0, -EINVAL);

        if (k->type < 0 || k->type >= _TUF_KEY_TYPE_MAX)
                return -EOPNOTSUPP;

        r = key_load_public(k, &pkey);
        if (r < 0)
                return r;

        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return openssl_error(-ENOMEM);
        if (EVP_DigestVerifyInit(ctx, &pctx, scheme_digest(k->type), NULL, pkey) != 1)
                return openssl_error(-EKEYREJECTED);
        if (k->type == TUF_KEY_RSA_PSS_SHA256) {
                r = setup_pss(pctx, RSA_PSS_SALTLEN_AUTO);
                if (r < 0)
                        return r;
        }

        /* 1 is a valid signature; 0 an invalid one; < 0 a signature that does
         * not even decode (wrong length, bad DER): invalid too. */
        r = EVP_DigestVerify(ctx, sig ?: (const void *) "", sig_size, msg ?: (const void *) "", msg_size);
        if (r != 1)
                return openssl_error(-EBADMSG);
        return 0;
}

bool tuf_key_same_material(const TufKey *a, const TufKey *b) {
        _cleanup_pkey_ EVP_PKEY *pa = NULL, *pb = NULL;

        if (!a || !b || !a->public || !b->public)
                return false;
        if (a->type != b->type)
                return false;
        /* Compare decoded keys, not text: the same key may be written in
         * upper- or lower-case hex, or as PEM with different line breaks. */
        if (key_load_public(a, &pa) < 0 || key_load_public(b, &pb) < 0) {
                (void) openssl_error(0);
                /* Unusable keys verify nothing; equal text is still the same key. */
                return streq(a->public, b->public);
        }
        return EVP_PKEY_eq(pa, pb) == 1;
}

/* ---- private keys ------------------------------------------------------------ */

struct TufPrivateKey {
        TufKeyType type;
        EVP_PKEY *pkey;
};

static int private_key_classify(EVP_PKEY *pkey, TufKeyType *ret) {
        if (EVP_PKEY_is_a(pkey, "ED25519"))
                *ret = TUF_KEY_ED25519;
        else if (pkey_is_p256(pkey))
                *ret = TUF_KEY_ECDSA_P256;
        else if (pkey_is_rsa(pkey))
                *ret = TUF_KEY_RSA_PSS_SHA256;
        else
                return -EOPNOTSUPP;
        return 0;
}

TufPrivateKey *tuf_private_key_free(TufPrivateKey *k) {
        if (!k)
                return NULL;
        /* EVP_PKEY_free() clears the private scalar/exponents before freeing
         * them (BN_clear_free, OPENSSL_secure_clear_free for Ed25519). */
        EVP_PKEY_free(k->pkey);
        explicit_wipe(k, sizeof(*k));
        free(k);
        return NULL;
}

/* Takes ownership of *pkey on success. */
static int private_key_new(EVP_PKEY **pkey, TufPrivateKey **ret) {
        TufPrivateKey *k;
        TufKeyType type;
        int r;

        r = private_key_classify(*pkey, &type);
        if (r < 0)
                return r;
        k = malloc(sizeof(*k));
        if (!k)
                return -ENOMEM;
        *k = (TufPrivateKey){.type = type, .pkey = TAKE_PTR(*pkey)};
        *ret = k;
        return 0;
}

int tuf_private_key_generate(TufKeyType type, TufPrivateKey **ret) {
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;

        assert_return(ret, -EINVAL);

        switch (type) {
        case TUF_KEY_ED25519:
                pkey = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
                break;
        case TUF_KEY_ECDSA_P256:
                pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
                break;
        case TUF_KEY_RSA_PSS_SHA256:
                pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t) RSA_BITS_GENERATE);
                break;
        default:
                return -EOPNOTSUPP;
        }
        if (!pkey)
                return openssl_error(-ENOMEM);

        return private_key_new(&pkey, ret);
}

/* Never prompt on a terminal: an encrypted key is simply refused. */
static int no_passphrase(char *buf, int size, int rwflag, void *userdata) {
        return -1;
}

int tuf_private_key_from_pem(const void *pem, size_t size, TufPrivateKey **ret) {
        _cleanup_bio_ BIO *bio = NULL;
        _cleanup_pkey_ EVP_PKEY *pkey = NULL;

        assert_return(pem || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (size > PRIVATE_KEY_PEM_MAX)
                return -EFBIG;
        if (size == 0)
                return -EPROTO;

        bio = BIO_new_mem_buf(pem, (int) size);
        if (!bio)
                return openssl_error(-ENOMEM);
        pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
        if (!pkey)
                return openssl_error(-EPROTO);

        return private_key_new(&pkey, ret);
}

int tuf_private_key_to_pem(const TufPrivateKey *k, char **ret, size_t *ret_size) {
        _cleanup_bio_ BIO *bio = NULL;
        char *data = NULL, *copy;
        long n;

        assert_return(k && k->pkey, -EINVAL);
        assert_return(ret, -EINVAL);

        /* Secure-heap memory BIO: its buffer is cleared when freed. */
        bio = BIO_new(BIO_s_secmem());
        if (!bio)
                return openssl_error(-ENOMEM);
        if (PEM_write_bio_PKCS8PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) != 1)
                return openssl_error(-ENOMEM);
        n = BIO_get_mem_data(bio, &data);
        if (n <= 0 || !data)
                return openssl_error(-ENOMEM);

        copy = malloc((size_t) n + 1);
        if (!copy)
                return -ENOMEM;
        memcpy(copy, data, (size_t) n);
        copy[n] = 0;

        if (ret_size)
                *ret_size = (size_t) n;
        *ret = copy;
        return 0;
}

static int pkey_public_pem(EVP_PKEY *pkey, char **ret) {
        _cleanup_bio_ BIO *bio = NULL;
        char *data = NULL, *copy;
        long n;

        bio = BIO_new(BIO_s_mem());
        if (!bio)
                return openssl_error(-ENOMEM);
        if (PEM_write_bio_PUBKEY(bio, pkey) != 1)
                return openssl_error(-ENOMEM);
        n = BIO_get_mem_data(bio, &data);
        if (n <= 0 || !data)
                return openssl_error(-ENOMEM);
        copy = strndup(data, (size_t) n);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int tuf_private_key_public(const TufPrivateKey *k, TufKey *ret) {
        _cleanup_(tuf_key_done) TufKey key = {.type = _TUF_KEY_TYPE_INVALID};
        const char *keytype;
        int r;

        assert_return(k && k->pkey, -EINVAL);
        assert_return(ret, -EINVAL);

        switch (k->type) {

        case TUF_KEY_ED25519: {
                uint8_t raw[32];
                size_t raw_size = sizeof(raw);

                if (EVP_PKEY_get_raw_public_key(k->pkey, raw, &raw_size) != 1 || raw_size != sizeof(raw))
                        return openssl_error(-EKEYREJECTED);
                key.public = hexmem(raw, raw_size);
                if (!key.public)
                        return -ENOMEM;
                keytype = "ed25519";
                break;
        }

        case TUF_KEY_ECDSA_P256:
                /* securesystemslib's current name; "ecdsa-sha2-nistp256" is deprecated. */
                keytype = "ecdsa";
                r = pkey_public_pem(k->pkey, &key.public);
                if (r < 0)
                        return r;
                break;

        case TUF_KEY_RSA_PSS_SHA256:
                keytype = "rsa";
                r = pkey_public_pem(k->pkey, &key.public);
                if (r < 0)
                        return r;
                break;

        default:
                return -EOPNOTSUPP;
        }

        key.type = k->type;
        key.keytype = strdup(keytype);
        key.scheme = strdup(tuf_key_type_to_string(k->type));
        if (!key.keytype || !key.scheme)
                return -ENOMEM;
        r = tuf_key_compute_keyid(&key, &key.keyid);
        if (r < 0)
                return r;

        *ret = key;
        key = (TufKey){.type = _TUF_KEY_TYPE_INVALID};
        return 0;
}

int tuf_private_key_sign(const TufPrivateKey *k, const void *msg, size_t msg_size, uint8_t **ret,
                         size_t *ret_size) {
        _cleanup_md_ctx_ EVP_MD_CTX *ctx = NULL;
        _cleanup_free_ uint8_t *sig = NULL;
        EVP_PKEY_CTX *pctx = NULL; /* owned by ctx */
        size_t sig_size = 0;
        int r;

        assert_return(k && k->pkey, -EINVAL);
        assert_return(msg || msg_size == 0, -EINVAL);
        assert_return(ret && ret_size, -EINVAL);

        if (!msg)
                msg = "";

        ctx = EVP_MD_CTX_new();
        if (!ctx)
                return openssl_error(-ENOMEM);
        if (EVP_DigestSignInit(ctx, &pctx, scheme_digest(k->type), NULL, k->pkey) != 1)
                return openssl_error(-EKEYREJECTED);
        if (k->type == TUF_KEY_RSA_PSS_SHA256) {
                r = setup_pss(pctx, RSA_PSS_SALTLEN_DIGEST);
                if (r < 0)
                        return r;
        }

        /* One-shot (Ed25519 has no streaming mode): ask the size, then sign. */
        if (EVP_DigestSign(ctx, NULL, &sig_size, msg, msg_size) != 1 || sig_size == 0)
                return openssl_error(-ENOMEM);
        sig = malloc(sig_size);
        if (!sig)
                return -ENOMEM;
        if (EVP_DigestSign(ctx, sig, &sig_size, msg, msg_size) != 1)
                return openssl_error(-ENOMEM);

        *ret_size = sig_size;
        *ret = TAKE_PTR(sig);
        return 0;
}

/* ---- hashes ---------------------------------------------------------------- */

struct TufHasher {
        EVP_MD_CTX *sha256, *sha512;
        uint64_t length;
        bool finished;
};

TufHasher *tuf_hasher_free(TufHasher *h) {
        if (!h)
                return NULL;
        EVP_MD_CTX_free(h->sha256);
        EVP_MD_CTX_free(h->sha512);
        free(h);
        return NULL;
}

/* Only the algorithms that will be compared are computed: a download signed
 * with sha256 alone is not slowed down by an sha512 nobody checks. */
static int hasher_ctx_new(const EVP_MD *md, EVP_MD_CTX **ret) {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();

        if (!ctx)
                return openssl_error(-ENOMEM);
        if (EVP_DigestInit_ex(ctx, md, NULL) != 1) {
                EVP_MD_CTX_free(ctx);
                return openssl_error(-ENOMEM);
        }
        *ret = ctx;
        return 0;
}

int tuf_hasher_new(const TufHashes *expected, TufHasher **ret) {
        _cleanup_(tuf_hasher_freep) TufHasher *h = NULL;
        bool want256 = !expected || expected->has_sha256, want512 = !expected || expected->has_sha512;
        int r;

        assert_return(ret, -EINVAL);
        /* Nothing understood to compare against: fail closed, as verify would. */
        if (!want256 && !want512)
                return -EOPNOTSUPP;

        h = calloc(1, sizeof(*h));
        if (!h)
                return -ENOMEM;
        if (want256) {
                r = hasher_ctx_new(EVP_sha256(), &h->sha256);
                if (r < 0)
                        return r;
        }
        if (want512) {
                r = hasher_ctx_new(EVP_sha512(), &h->sha512);
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(h);
        return 0;
}

int tuf_hasher_update(TufHasher *h, const void *data, size_t size) {
        assert_return(h, -EINVAL);
        assert_return(data || size == 0, -EINVAL);
        assert_return(!h->finished, -EINVAL);

        if (size == 0)
                return 0;
        if ((uint64_t) size > UINT64_MAX - h->length)
                return -EFBIG;
        if ((h->sha256 && EVP_DigestUpdate(h->sha256, data, size) != 1) ||
            (h->sha512 && EVP_DigestUpdate(h->sha512, data, size) != 1))
                return openssl_error(-ENOMEM);
        h->length += size;
        return 0;
}

uint64_t tuf_hasher_length(const TufHasher *h) {
        return h ? h->length : 0;
}

/* Compare the expected hashes that are present against computed ones.
 * Fails closed: an expectation without any understood hash is refused
 * (-EOPNOTSUPP) rather than silently passing, as a TufHashes parsed by
 * tuf_hashes_from_json() always carries at least one. Callers holding an
 * optional, absent "hashes" (timestamp's snapshot entry) skip the call. */
static int hashes_match(const TufHashes *expected, const TufHashes *actual) {
        bool ok = true;

        if (!expected->has_sha256 && !expected->has_sha512)
                return -EOPNOTSUPP;
        /* Evaluate every comparison, not stopping at the first mismatch. */
        if (expected->has_sha256)
                ok &= memeq_consttime(expected->sha256, actual->sha256, sizeof(actual->sha256));
        if (expected->has_sha512)
                ok &= memeq_consttime(expected->sha512, actual->sha512, sizeof(actual->sha512));
        return ok ? 0 : -EBADMSG;
}

int tuf_hasher_verify(TufHasher *h, uint64_t expected_length, const TufHashes *expected) {
        TufHashes actual = {};
        unsigned n256 = sizeof(actual.sha256), n512 = sizeof(actual.sha512);

        assert_return(h, -EINVAL);
        assert_return(expected, -EINVAL);
        assert_return(!h->finished, -EINVAL);
        /* The hasher must have computed every algorithm it is asked to compare. */
        assert_return((!expected->has_sha256 || h->sha256) && (!expected->has_sha512 || h->sha512), -EINVAL);

        h->finished = true;
        actual.has_sha256 = h->sha256;
        actual.has_sha512 = h->sha512;
        if ((h->sha256 && EVP_DigestFinal_ex(h->sha256, actual.sha256, &n256) != 1) ||
            (h->sha512 && EVP_DigestFinal_ex(h->sha512, actual.sha512, &n512) != 1))
                return openssl_error(-ENOMEM);
        assert(n256 == sizeof(actual.sha256) && n512 == sizeof(actual.sha512));

        if (h->length > expected_length)
                return -EFBIG;
        if (h->length < expected_length)
                return -EBADMSG;
        return hashes_match(expected, &actual);
}

int tuf_hashes_compute(const void *data, size_t size, TufHashes *ret) {
        TufHashes h = {.has_sha256 = true, .has_sha512 = true};
        unsigned n = 0;

        assert_return(data || size == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        if (!data)
                data = "";
        if (EVP_Digest(data, size, h.sha256, &n, EVP_sha256(), NULL) != 1)
                return openssl_error(-ENOMEM);
        assert(n == sizeof(h.sha256));
        if (EVP_Digest(data, size, h.sha512, &n, EVP_sha512(), NULL) != 1)
                return openssl_error(-ENOMEM);
        assert(n == sizeof(h.sha512));

        *ret = h;
        return 0;
}

int tuf_hashes_verify(const TufHashes *h, const void *data, size_t size) {
        TufHashes actual = {};
        unsigned n = 0;

        assert_return(h, -EINVAL);
        assert_return(data || size == 0, -EINVAL);

        if (!data)
                data = "";
        /* Only the algorithms expected: metadata can be megabytes. */
        if (h->has_sha256 && EVP_Digest(data, size, actual.sha256, &n, EVP_sha256(), NULL) != 1)
                return openssl_error(-ENOMEM);
        if (h->has_sha512 && EVP_Digest(data, size, actual.sha512, &n, EVP_sha512(), NULL) != 1)
                return openssl_error(-ENOMEM);
        return hashes_match(h, &actual);
}

/*
 * Consistent snapshot target file names are "HASH.NAME". python-tuf and
 * tuf-js take the first hash listed in the document; TufHashes does not keep
 * the document order, so we prefer sha256, the algorithm every common
 * publisher (python-tuf, tuf-js, go-tuf, oob-repo) lists first or alone.
 */
char *tuf_hashes_first_hex(const TufHashes *h) {
        if (!h)
                return NULL;
        if (h->has_sha256)
                return hexmem(h->sha256, sizeof(h->sha256));
        if (h->has_sha512)
                return hexmem(h->sha512, sizeof(h->sha512));
        return NULL;
}

/* A digest of exactly size bytes in hex (either case), decoded in place:
 * a targets document lists one or two per target, tens of thousands. */
static int hash_from_json(const json_t *v, uint8_t *ret, size_t size) {
        const char *hex = json_plain_string(v, 2 * size);

        if (!hex || unhexmem_to(hex, json_string_length(v), ret, size) < 0)
                return -EPROTO;
        return 0;
}

int tuf_hashes_from_json(const json_t *o, TufHashes *ret) {
        TufHashes h = {};
        const json_t *v;
        int r;

        assert_return(ret, -EINVAL);

        if (!json_is_object(o))
                return -EPROTO;

        v = json_object_get(o, "sha256");
        if (v) {
                r = hash_from_json(v, h.sha256, sizeof(h.sha256));
                if (r < 0)
                        return r;
                h.has_sha256 = true;
        }
        v = json_object_get(o, "sha512");
        if (v) {
                r = hash_from_json(v, h.sha512, sizeof(h.sha512));
                if (r < 0)
                        return r;
                h.has_sha512 = true;
        }
        /* Other algorithms (md5, sha384, blake2b...) are ignored: by
         * themselves they cannot protect a download we can check. */
        if (!h.has_sha256 && !h.has_sha512)
                return -EOPNOTSUPP;

        *ret = h;
        return 0;
}

static int hash_to_json(json_t *o, const char *name, const uint8_t *md, size_t size) {
        _cleanup_free_ char *hex = hexmem(md, size);

        if (!hex)
                return -ENOMEM;
        if (json_object_set_new(o, name, json_string(hex)) < 0)
                return -ENOMEM;
        return 0;
}

int tuf_hashes_to_json(const TufHashes *h, json_t **ret) {
        _cleanup_json_ json_t *o = NULL;
        int r;

        assert_return(h, -EINVAL);
        assert_return(h->has_sha256 || h->has_sha512, -EINVAL);
        assert_return(ret, -EINVAL);

        o = json_object();
        if (!o)
                return -ENOMEM;
        if (h->has_sha256) {
                r = hash_to_json(o, "sha256", h->sha256, sizeof(h->sha256));
                if (r < 0)
                        return r;
        }
        if (h->has_sha512) {
                r = hash_to_json(o, "sha512", h->sha512, sizeof(h->sha512));
                if (r < 0)
                        return r;
        }

        *ret = TAKE_PTR(o);
        return 0;
}

/* ---- signing metadata ---------------------------------------------------- */

/*
 * Canonical JSON copies control characters raw into strings, which no JSON
 * parser accepts. Canonical JSON has no white space outside strings, so every
 * byte below 0x20 in it is inside a string, and escaping each one gives valid
 * JSON that parses back to the same values, hence the same canonical bytes.
 * For the usual documents (no control characters) the output is the input.
 */
static int escape_control_bytes(const char *s, size_t n, char **ret, size_t *ret_size) {
        static const char hex[] = "0123456789abcdef";
        size_t extra = 0, j = 0;
        char *out;

        for (size_t i = 0; i < n; i++)
                if ((uint8_t) s[i] < 0x20)
                        extra += 5; /* \u00XX */
        if (extra > SIZE_MAX - n - 1)
                return -ENOMEM;
        out = malloc(n + extra + 1);
        if (!out)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                uint8_t c = (uint8_t) s[i];
                if (c >= 0x20) {
                        out[j++] = (char) c;
                        continue;
                }
                memcpy(out + j, "\\u00", 4);
                out[j + 4] = hex[c >> 4];
                out[j + 5] = hex[c & 15];
                j += 6;
        }
        out[j] = 0;
        *ret = out;
        *ret_size = j;
        return 0;
}

typedef struct SignatureEntry {
        char *keyid;
        char *sig_hex;
} SignatureEntry;

/* Entries made so far; slots up to n_allocated are zeroed. */
typedef struct SignatureList {
        SignatureEntry *entries;
        size_t n, n_allocated;
} SignatureList;

static void signature_list_done(SignatureList *l) {
        for (size_t i = 0; i < l->n_allocated; i++) {
                free(l->entries[i].keyid);
                free(l->entries[i].sig_hex);
        }
        free(l->entries);
        *l = (SignatureList){};
}

static int signature_entry_compare(const void *a, const void *b) {
        const SignatureEntry *x = a, *y = b;
        return strcmp(x->keyid, y->keyid);
}

/* Sign canonical bytes with every distinct key; entries sorted by keyid so
 * that the output does not depend on the order the keys were given in. */
static int signature_list_make(SignatureList *l, TufPrivateKey *const *keys, size_t n_keys,
                               const char *canonical, size_t canonical_size) {
        if (n_keys == 0)
                return 0;
        l->entries = calloc(n_keys, sizeof(SignatureEntry));
        if (!l->entries)
                return -ENOMEM;
        l->n_allocated = n_keys;

        for (size_t i = 0; i < n_keys; i++) {
                _cleanup_(tuf_key_done) TufKey pub = {.type = _TUF_KEY_TYPE_INVALID};
                _cleanup_free_ uint8_t *sig = NULL;
                size_t sig_size = 0;
                bool seen = false;
                int r;

                assert_return(keys[i], -EINVAL);
                r = tuf_private_key_public(keys[i], &pub);
                if (r < 0)
                        return r;
                /* The same key given twice signs once: a threshold counts keys. */
                for (size_t j = 0; j < l->n && !seen; j++)
                        seen = streq(l->entries[j].keyid, pub.keyid);
                if (seen)
                        continue;

                r = tuf_private_key_sign(keys[i], canonical, canonical_size, &sig, &sig_size);
                if (r < 0)
                        return r;
                l->entries[l->n].sig_hex = hexmem(sig, sig_size);
                if (!l->entries[l->n].sig_hex)
                        return -ENOMEM;
                l->entries[l->n++].keyid = TAKE_PTR(pub.keyid);
        }
        if (l->n > 1)
                qsort(l->entries, l->n, sizeof(SignatureEntry), signature_entry_compare);
        return 0;
}

int tuf_metadata_sign(const char *signed_json, size_t size, TufPrivateKey *const *keys, size_t n_keys,
                      char **ret, size_t *ret_size) {
        _cleanup_free_ char *escaped = NULL, *canonical = NULL, *doc = NULL, *out = NULL;
        _cleanup_json_ json_t *signed_obj = NULL, *envelope = NULL, *signatures = NULL, *check = NULL;
        _cleanup_(signature_list_done) SignatureList list = {};
        size_t escaped_size, canonical_size, doc_size, out_size;
        int r;

        assert_return(signed_json || size == 0, -EINVAL);
        assert_return(keys || n_keys == 0, -EINVAL);
        assert_return(ret, -EINVAL);

        /* What is signed is the canonical form of the parsed object: for
         * canonical input that is the input itself, byte for byte. */
        r = escape_control_bytes(signed_json ?: "", size, &escaped, &escaped_size);
        if (r < 0)
                return r;
        r = tuf_json_parse(escaped, escaped_size, TUF_METADATA_MAX_LENGTH, &signed_obj);
        if (r < 0)
                return r;
        r = tuf_json_canonical(signed_obj, &canonical, &canonical_size);
        if (r < 0)
                return r;

        r = signature_list_make(&list, keys, n_keys, canonical, canonical_size);
        if (r < 0)
                return r;

        signatures = json_array();
        envelope = json_object();
        if (!signatures || !envelope)
                return -ENOMEM;
        for (size_t i = 0; i < list.n; i++) {
                json_t *s = json_pack("{s:s, s:s}", "keyid", list.entries[i].keyid, "sig",
                                      list.entries[i].sig_hex);
                if (!s || json_array_append_new(signatures, s) < 0)
                        return -ENOMEM;
        }
        if (json_object_set(envelope, "signatures", signatures) < 0 ||
            json_object_set(envelope, "signed", signed_obj) < 0)
                return -ENOMEM;

        r = tuf_json_canonical(envelope, &doc, &doc_size);
        if (r < 0)
                return r;
        r = escape_control_bytes(doc, doc_size, &out, &out_size);
        if (r < 0)
                return r;

        /* Our own client must accept what we publish (one nesting level more
         * than "signed" alone, so the depth cap could bite): check it here
         * rather than in the field. */
        r = tuf_json_parse(out, out_size, TUF_METADATA_MAX_LENGTH, &check);
        if (r < 0)
                return r;

        if (ret_size)
                *ret_size = out_size;
        *ret = TAKE_PTR(out);
        return 0;
}

// SRTP's two ciphers (RFC 7714 AES-128-GCM; RFC 3711 AES-128-CM with HMAC-SHA1-80) with one
// OpenSSL context per session key, as Pion (rtcd) and libsrtp keep one per stream. Node's crypto
// can only build new objects for every packet (createCipheriv, createHmac and their calls: 5–6 µs
// a packet, most of it the objects); here the key schedules are made once and each packet only
// sets its IV. A Node-API addon; OpenSSL's symbols are the ones the running node itself carries.
//
// Exports { aesGcm, aesCm }, each { create, seal, open }, on Buffers:
//   aesGcm.create(key16)                                       → handle
//   aesGcm.seal(h, iv12, aad, plaintext, dst, offset)          ciphertext, then the 16-byte tag
//   aesGcm.open(h, iv12, aad, ciphertext, tag16, dst, offset)  → authentic; plaintext at dst+offset
//   aesCm.create(key16, authKey20)                             → handle
//   aesCm.seal(h, iv16, header, plaintext, roc, dst, offset)   ciphertext, then the 10-byte tag
//   aesCm.open(h, iv16, header, ciphertext, roc, tag10, dst, offset) → authentic; as above
// (CM's tag is HMAC-SHA1 over header, ciphertext and the 32-bit rollover counter, cut to 80 bits.)
// Every length is checked, so no call can read or write outside its buffers: a misfit is a TypeError,
// as is an output that partly overlaps an input (exactly in place is allowed). After an `open` that
// returns false, dst holds nothing usable.
#define NAPI_VERSION 8 // type tags
#include <math.h>
#include <node_api.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define KEY_LEN 16
#define GCM_IV_LEN 12
#define GCM_TAG_LEN 16
#define CM_IV_LEN 16
#define CM_AUTH_KEY_LEN 20
#define CM_TAG_LEN 10
#define SHA1_LEN 20

typedef struct {
  EVP_CIPHER_CTX *seal, *open; // GCM: one per direction; CM: `seal` only (CTR is its own inverse)
  EVP_MAC_CTX *mac;            // CM only
} srtp_t;

// Marks our handles, so that an external another addon made is never taken for one.
static const napi_type_tag HANDLE_TAG = {0x8a1c2f0e5b6d4a37ULL, 0x93e4b7d2c1f60a58ULL};

static napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

static int bytes(napi_env env, napi_value value, unsigned char **data, size_t *len) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_object) return 0;
  return napi_get_buffer_info(env, value, (void **)data, len) == napi_ok;
}

static int sized(napi_env env, napi_value value, unsigned char **data, size_t len) {
  size_t got;
  return bytes(env, value, data, &got) && got == len;
}

static void release(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  srtp_t *s = data;
  EVP_CIPHER_CTX_free(s->seal);
  EVP_CIPHER_CTX_free(s->open);
  EVP_MAC_CTX_free(s->mac);
  free(s);
}

static srtp_t *unwrap(napi_env env, napi_value value, int cm) {
  void *data = NULL;
  napi_valuetype type;
  bool ours = false;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_external) return NULL;
  if (napi_check_object_type_tag(env, value, &HANDLE_TAG, &ours) != napi_ok || !ours) return NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || !data) return NULL;
  srtp_t *s = data;
  return (s->mac != NULL) == cm ? s : NULL; // a GCM handle is not a CM one
}

static napi_value wrap(napi_env env, srtp_t *s) {
  napi_value handle;
  if (napi_create_external(env, s, release, NULL, &handle) != napi_ok) {
    release(env, s, NULL);
    return NULL;
  }
  napi_type_tag_object(env, handle, &HANDLE_TAG);
  return handle;
}

// A whole number in [0, max]: Node-API's own uint32 reading wraps (2^32 + 1 would be 1, NaN 0).
static int whole(napi_env env, napi_value value, double max, uint32_t *out) {
  double d;
  if (napi_get_value_double(env, value, &d) != napi_ok || !(d >= 0 && d <= max) || d != floor(d)) return 0;
  *out = (uint32_t)d;
  return 1;
}

static int overlaps(const unsigned char *a, size_t a_len, const unsigned char *b, size_t b_len) {
  return a_len && b_len && a < b + b_len && b < a + a_len;
}

// A packet's buffers: its IV, the header (GCM's AAD), the input, and dst with room from offset.
typedef struct {
  srtp_t *s;
  unsigned char *iv, *header, *in, *dst;
  size_t header_len, in_len;
} packet_t;

// Reads (handle, iv, header, input, ...) and (dst, offset) at the end; `room` is what the output
// needs from offset on.
static int read_packet(napi_env env, napi_value *argv, size_t argc, int cm, size_t iv_len, size_t tag_len,
                       int sealing, packet_t *p) {
  size_t dst_len;
  uint32_t offset;
  p->s = unwrap(env, argv[0], cm);
  if (!p->s || !sized(env, argv[1], &p->iv, iv_len) || !bytes(env, argv[2], &p->header, &p->header_len) ||
      !bytes(env, argv[3], &p->in, &p->in_len) || !bytes(env, argv[argc - 2], &p->dst, &dst_len) ||
      !whole(env, argv[argc - 1], (double)dst_len, &offset))
    return 0;
  size_t room = p->in_len + (sealing ? tag_len : 0);
  if (p->in_len > INT32_MAX || p->header_len > INT32_MAX || dst_len - offset < room) return 0;
  p->dst += offset;
  // The output may be the input exactly (in place), never part of it, the header or the IV.
  return !(p->dst != p->in && overlaps(p->dst, room, p->in, p->in_len)) &&
         !overlaps(p->dst, room, p->header, p->header_len) && !overlaps(p->dst, room, p->iv, iv_len);
}

static int args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  return napi_get_cb_info(env, info, &argc, argv, NULL, NULL) == napi_ok && argc >= want;
}

static napi_value boolean(napi_env env, int value) {
  napi_value result;
  napi_get_boolean(env, value, &result);
  return result;
}

// ---- AES-128-GCM (RFC 7714) ----

static napi_value gcm_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  unsigned char *key;
  if (!args(env, info, 1, argv) || !sized(env, argv[0], &key, KEY_LEN))
    return fail(env, "srtp aesGcm.create: (16-byte key)");
  srtp_t *s = calloc(1, sizeof *s);
  if (!s) return fail(env, "srtp aesGcm.create: out of memory");
  s->seal = EVP_CIPHER_CTX_new();
  s->open = EVP_CIPHER_CTX_new();
  if (!s->seal || !s->open || EVP_EncryptInit_ex(s->seal, EVP_aes_128_gcm(), NULL, key, NULL) != 1 ||
      EVP_DecryptInit_ex(s->open, EVP_aes_128_gcm(), NULL, key, NULL) != 1) {
    release(env, s, NULL);
    return fail(env, "srtp aesGcm.create: OpenSSL refused the key");
  }
  return wrap(env, s);
}

static napi_value gcm_seal(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  packet_t p;
  if (!args(env, info, 6, argv) || !read_packet(env, argv, 6, 0, GCM_IV_LEN, GCM_TAG_LEN, 1, &p))
    return fail(env, "srtp aesGcm.seal: (handle, 12-byte iv, aad, plaintext, dst with room, offset)");
  int len;
  if (EVP_EncryptInit_ex(p.s->seal, NULL, NULL, NULL, p.iv) != 1 ||
      EVP_EncryptUpdate(p.s->seal, NULL, &len, p.header, (int)p.header_len) != 1 ||
      EVP_EncryptUpdate(p.s->seal, p.dst, &len, p.in, (int)p.in_len) != 1 ||
      EVP_EncryptFinal_ex(p.s->seal, p.dst + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(p.s->seal, EVP_CTRL_GCM_GET_TAG, GCM_TAG_LEN, p.dst + p.in_len) != 1)
    return fail(env, "srtp aesGcm.seal: OpenSSL failed");
  return NULL;
}

static napi_value gcm_open(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  packet_t p;
  unsigned char *tag;
  if (!args(env, info, 7, argv) || !read_packet(env, argv, 7, 0, GCM_IV_LEN, 0, 0, &p) ||
      !sized(env, argv[4], &tag, GCM_TAG_LEN))
    return fail(env, "srtp aesGcm.open: (handle, 12-byte iv, aad, ciphertext, 16-byte tag, dst with room, offset)");
  int len;
  int ok = EVP_DecryptInit_ex(p.s->open, NULL, NULL, NULL, p.iv) == 1 &&
           EVP_DecryptUpdate(p.s->open, NULL, &len, p.header, (int)p.header_len) == 1 &&
           EVP_DecryptUpdate(p.s->open, p.dst, &len, p.in, (int)p.in_len) == 1 &&
           EVP_CIPHER_CTX_ctrl(p.s->open, EVP_CTRL_GCM_SET_TAG, GCM_TAG_LEN, tag) == 1 &&
           EVP_DecryptFinal_ex(p.s->open, p.dst + len, &len) == 1;
  return boolean(env, ok);
}

// ---- AES-128-CM with HMAC-SHA1-80 (RFC 3711) ----

static napi_value cm_create(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  unsigned char *key, *auth_key;
  if (!args(env, info, 2, argv) || !sized(env, argv[0], &key, KEY_LEN) ||
      !sized(env, argv[1], &auth_key, CM_AUTH_KEY_LEN))
    return fail(env, "srtp aesCm.create: (16-byte key, 20-byte auth key)");
  srtp_t *s = calloc(1, sizeof *s);
  if (!s) return fail(env, "srtp aesCm.create: out of memory");
  EVP_MAC *hmac = EVP_MAC_fetch(NULL, OSSL_MAC_NAME_HMAC, NULL);
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA1", 0),
                         OSSL_PARAM_construct_end()};
  s->seal = EVP_CIPHER_CTX_new();
  s->mac = hmac ? EVP_MAC_CTX_new(hmac) : NULL;
  EVP_MAC_free(hmac); // the context holds its own reference
  if (!s->seal || !s->mac || EVP_EncryptInit_ex(s->seal, EVP_aes_128_ctr(), NULL, key, NULL) != 1 ||
      EVP_MAC_init(s->mac, auth_key, CM_AUTH_KEY_LEN, params) != 1) {
    release(env, s, NULL);
    return fail(env, "srtp aesCm.create: OpenSSL refused the keys");
  }
  return wrap(env, s);
}

// HMAC-SHA1 over header, ciphertext and the rollover counter (big-endian), reusing the keyed context.
static int cm_tag(srtp_t *s, const unsigned char *header, size_t header_len, const unsigned char *ciphertext,
                  size_t len, uint32_t roc, unsigned char out[SHA1_LEN]) {
  unsigned char roc_be[4] = {roc >> 24, roc >> 16, roc >> 8, roc};
  size_t out_len;
  return EVP_MAC_init(s->mac, NULL, 0, NULL) == 1 && EVP_MAC_update(s->mac, header, header_len) == 1 &&
         EVP_MAC_update(s->mac, ciphertext, len) == 1 && EVP_MAC_update(s->mac, roc_be, 4) == 1 &&
         EVP_MAC_final(s->mac, out, &out_len, SHA1_LEN) == 1 && out_len == SHA1_LEN;
}

static int ctr(srtp_t *s, const unsigned char *iv, const unsigned char *in, size_t len, unsigned char *out) {
  int out_len;
  return EVP_EncryptInit_ex(s->seal, NULL, NULL, NULL, iv) == 1 &&
         EVP_EncryptUpdate(s->seal, out, &out_len, in, (int)len) == 1;
}

static napi_value cm_seal(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  packet_t p;
  uint32_t roc;
  if (!args(env, info, 7, argv) || !read_packet(env, argv, 7, 1, CM_IV_LEN, CM_TAG_LEN, 1, &p) ||
      !whole(env, argv[4], UINT32_MAX, &roc))
    return fail(env, "srtp aesCm.seal: (handle, 16-byte iv, header, plaintext, roc, dst with room, offset)");
  unsigned char tag[SHA1_LEN];
  if (!ctr(p.s, p.iv, p.in, p.in_len, p.dst) || !cm_tag(p.s, p.header, p.header_len, p.dst, p.in_len, roc, tag))
    return fail(env, "srtp aesCm.seal: OpenSSL failed");
  memcpy(p.dst + p.in_len, tag, CM_TAG_LEN);
  return NULL;
}

static napi_value cm_open(napi_env env, napi_callback_info info) {
  napi_value argv[8];
  packet_t p;
  uint32_t roc;
  unsigned char *tag;
  if (!args(env, info, 8, argv) || !read_packet(env, argv, 8, 1, CM_IV_LEN, 0, 0, &p) ||
      !whole(env, argv[4], UINT32_MAX, &roc) || !sized(env, argv[5], &tag, CM_TAG_LEN))
    return fail(env,
                "srtp aesCm.open: (handle, 16-byte iv, header, ciphertext, roc, 10-byte tag, dst with room, offset)");
  unsigned char expected[SHA1_LEN];
  // Authenticated before anything is decrypted; compared in constant time.
  if (!cm_tag(p.s, p.header, p.header_len, p.in, p.in_len, roc, expected) ||
      CRYPTO_memcmp(expected, tag, CM_TAG_LEN) != 0)
    return boolean(env, 0);
  return boolean(env, ctr(p.s, p.iv, p.in, p.in_len, p.dst));
}

static napi_value methods(napi_env env, napi_callback create, napi_callback seal, napi_callback open) {
  napi_value object;
  napi_property_descriptor props[] = {
      {"create", NULL, create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seal", NULL, seal, NULL, NULL, NULL, napi_enumerable, NULL},
      {"open", NULL, open, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_create_object(env, &object);
  napi_define_properties(env, object, 3, props);
  return object;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_set_named_property(env, exports, "aesGcm", methods(env, gcm_create, gcm_seal, gcm_open));
  napi_set_named_property(env, exports, "aesCm", methods(env, cm_create, cm_seal, cm_open));
  return exports;
}

NAPI_MODULE(srtp_native, init)

/*
 * client/jscan.c: an allocation-light JSON scanner for the two texts the
 * store reads most: the fields object of a local write (sl_store_put) and a
 * `changes` frame (sl_store_apply_changes).  jansson's general parser costs
 * about half the instructions of an applied change; this one reads the
 * common shape in one pass over a copy of the text, unescaping strings in
 * place.
 *
 * sls_scan_flat reads a fields object into arrays (no jansson value at
 * all), for a put on a known table, the commonest write.  A frame's fields
 * objects are read the same way, into arrays the frame owns (sls_change:
 * flat); sls_change_fields makes a jansson object of one when the store's
 * general path wants it, as sls_scan_fields would have read it.
 *
 * It is a fast path, never the judge: it accepts only text that is valid
 * JSON (RFC 8259, as jansson 2.14's json_loads reads it with no flags: no
 * NUL in strings, UTF-8 checked, no lone surrogates, integers that fit a
 * json_int_t, reals that do not overflow) of the shape below, and gives the
 * same values json_loads would.  Anything else, malformed or merely
 * unusual (nesting in fields, a value of another type, integers of more
 * than 18 digits), makes it decline, and the
 * caller parses the text with jansson, which decides; so the store's
 * answers (SL_EINVAL for a malformed frame) are jansson's.  It never steps
 * past the text's NUL: every step stops at a NUL.  One step reads ahead: on
 * x86-64 a string's plain run is looked at 16 bytes at a time (SSE2), which
 * may read up to 15 bytes past the NUL, so every copy the scanner reads
 * (copy_text) is followed by SCAN_PAD zero bytes.
 *
 * Shapes:
 *   fields   an object whose values are strings, numbers, true, false, null.
 *   changes  an object with "changes", an array of change objects, and
 *            "cursor", an integer >= 0; other members scalars.  A change has
 *            "seq" (integer >= 0), "kind" ("upsert" or "delete"), "table",
 *            "row", "hlc" (16 hex digits), "client_id" (1-64 bytes), all
 *            strings, "op_id" (a string, or another scalar for none), and
 *            "fields" (a fields object, or a scalar for none); other members
 *            scalars.  Duplicate members: the last wins, as in jansson.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "hlc.h"
#include "store_int.h"

/* A position in a NUL-terminated, writable copy of the text. */
typedef struct scan {
	char *p;
} scan;

/* One scalar value; str points into the copy, NUL-terminated, unescaped. */
typedef enum { JV_STRING, JV_INT, JV_REAL, JV_TRUE, JV_FALSE, JV_NULL } jv_type;

typedef struct jval {
	jv_type type;
	char *str;
	size_t len;
	json_int_t i;
	double d;
} jval;

static void
skip_ws(scan *s)
{
	while (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')
		s->p++;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Four hex digits at r into *cp; stops at the first byte that is not one (a NUL included). */
static bool
hex4(const char *r, unsigned *cp)
{
	unsigned v = 0;

	for (int i = 0; i < 4; i++) {
		int h = hexval(r[i]);

		if (h < 0)
			return false;
		v = v << 4 | (unsigned) h;
	}
	*cp = v;
	return true;
}

/*
 * The length of the UTF-8 sequence at r (first byte >= 0x80), or 0 when it
 * is not one jansson accepts: no overlong forms, no surrogates, nothing
 * above U+10FFFF.  Stops at the first bad byte, so never passes a NUL.
 */
static size_t
utf8_seq(const unsigned char *r)
{
	unsigned c = r[0], v;
	size_t n;

	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
	} else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((r[i] & 0xC0) != 0x80)
			return 0;
		v = v << 6 | (r[i] & 0x3F);
	}
	if ((n == 3 && v < 0x800) || (n == 4 && v < 0x10000) || v > 0x10FFFF ||
	    (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	return n;
}

bool
sls_utf8_ok(const char *s)
{
	const unsigned char *r = (const unsigned char *) s;

	while (*r) {
		size_t n = *r < 0x80 ? 1 : utf8_seq(r);

		if (n == 0)
			return false;
		r += n;
	}
	return true;
}

/* Writes code point cp (not a surrogate, not 0) as UTF-8 at w; returns the length. */
static size_t
utf8_put(char *w, unsigned cp)
{
	if (cp < 0x80) {
		w[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800) {
		w[0] = (char) (0xC0 | cp >> 6);
		w[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000) {
		w[0] = (char) (0xE0 | cp >> 12);
		w[1] = (char) (0x80 | (cp >> 6 & 0x3F));
		w[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	w[0] = (char) (0xF0 | cp >> 18);
	w[1] = (char) (0x80 | (cp >> 12 & 0x3F));
	w[2] = (char) (0x80 | (cp >> 6 & 0x3F));
	w[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

#ifndef __SSE2__
/* The bytes a string holds as they are: printable ASCII but the quote and the backslash. */
#define P8(x) x, x, x, x, x, x, x, x
static const bool plain[256] = {
	P8(0), P8(0), P8(0), P8(0),       /* control characters */
	1, 1, 0, 1, 1, 1, 1, 1, P8(1),    /* ' ' '!' '"' ... */
	P8(1), P8(1),                     /* '0'... */
	P8(1), P8(1), P8(1),              /* '@'... */
	1, 1, 1, 1, 0, 1, 1, 1,           /* 'X' 'Y' 'Z' '[' '\\' ... */
	P8(1), P8(1), P8(1), P8(1),       /* '`'... to DEL */
	P8(0), P8(0), P8(0), P8(0), P8(0), P8(0), P8(0), P8(0), /* UTF-8 sequences: checked below */
	P8(0), P8(0), P8(0), P8(0), P8(0), P8(0), P8(0), P8(0),
};
#undef P8
#endif

/* The zero bytes copy_text puts after a copy's NUL, for plain_run's reads ahead. */
#define SCAN_PAD 16

/*
 * The end of the run of plain bytes at r: the first byte that is not one
 * (at most the text's NUL).  With SSE2, 16 bytes a step: a byte is flagged
 * when it is '"', '\\', or below 0x20 as a signed byte (a control character,
 * or >= 0x80); reads at most 15 bytes past the run's end.
 */
static inline char *
plain_run(char *r)
{
#ifdef __SSE2__
	const __m128i quote = _mm_set1_epi8('"'), bslash = _mm_set1_epi8('\\'), space = _mm_set1_epi8(' ');

	for (;;) {
		__m128i x = _mm_loadu_si128((const __m128i *) (const void *) r);
		unsigned m = (unsigned) _mm_movemask_epi8(_mm_or_si128(
			_mm_or_si128(_mm_cmpeq_epi8(x, quote), _mm_cmpeq_epi8(x, bslash)), _mm_cmplt_epi8(x, space)));

		if (m != 0)
			return r + __builtin_ctz(m);
		r += 16;
	}
#else
	while (plain[(unsigned char) *r])
		r++;
	return r;
#endif
}

/*
 * The string at s->p (its opening quote), unescaped in place: *out points at
 * it, NUL-terminated, *len bytes.  The unescaped text is never longer than
 * the escaped one, so writing stays behind reading.  False for a string
 * jansson refuses (control character, bad escape, \u0000, lone surrogate,
 * bad UTF-8, no closing quote).
 */
static bool scan_str_rest(scan *s, char *start, char *r, char **out, size_t *len);

static inline bool
scan_str(scan *s, char **out, size_t *len)
{
	char *start = s->p + 1, *r = start;

	/* The common string: a run of printable ASCII, then the closing quote. */
	r = plain_run(r);
	if (*r != '"')
		return scan_str_rest(s, start, r, out, len);
	*r = '\0';
	s->p = r + 1;
	*out = start;
	*len = (size_t) (r - start);
	return true;
}

/*
 * scan_str's general way, out of line (its common case is inline in each
 * caller): the string at start, whose plain run ends at r, unescaped in
 * place from r on.  As scan_str.
 */
static bool
scan_str_rest(scan *s, char *start, char *r, char **out, size_t *len)
{
	char *w = r;

	for (;;) {
		unsigned char c = (unsigned char) *r;

		if (c == '"')
			break;
		if (c < 0x20)
			return false; /* a control character, or the end of the text */
		if (c == '\\') {
			unsigned cp, lo;

			switch (r[1]) {
			case '"': *w++ = '"'; break;
			case '\\': *w++ = '\\'; break;
			case '/': *w++ = '/'; break;
			case 'b': *w++ = '\b'; break;
			case 'f': *w++ = '\f'; break;
			case 'n': *w++ = '\n'; break;
			case 'r': *w++ = '\r'; break;
			case 't': *w++ = '\t'; break;
			case 'u':
				if (!hex4(r + 2, &cp) || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
					return false;
				r += 6;
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					if (r[0] != '\\' || r[1] != 'u' || !hex4(r + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
						return false;
					r += 6;
					cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				}
				w += utf8_put(w, cp);
				continue;
			default:
				return false;
			}
			r += 2;
			continue;
		}
		if (c < 0x80) {
			*w++ = *r++;
			continue;
		}
		{
			size_t n = utf8_seq((const unsigned char *) r);

			if (n == 0)
				return false;
			while (n-- > 0)
				*w++ = *r++;
		}
	}
	s->p = r + 1;
	*w = '\0'; /* at most where the closing quote was */
	*out = start;
	*len = (size_t) (w - start);
	return true;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/*
 * The number at s->p: JV_INT for an integer of at most 18 digits (always in
 * range), JV_REAL for one with a fraction or an exponent that does not
 * overflow.  False for anything else, a longer integer included.
 */
static bool
scan_num(scan *s, jval *v)
{
	char *b = s->p, *r = b, *digits;

	if (*r == '-')
		r++;
	digits = r;
	if (*r == '0') {
		r++;
		if (is_digit(*r))
			return false;
	} else if (is_digit(*r)) {
		while (is_digit(*r))
			r++;
	} else
		return false;
	if (*r != '.' && *r != 'e' && *r != 'E') {
		json_int_t n = 0;

		if (r - digits > 18)
			return false;
		for (const char *d = digits; d < r; d++)
			n = n * 10 + (*d - '0');
		v->type = JV_INT;
		v->i = *b == '-' ? -n : n;
		s->p = r;
		return true;
	}
	if (*r == '.') {
		r++;
		if (!is_digit(*r))
			return false;
		while (is_digit(*r))
			r++;
	}
	if (*r == 'e' || *r == 'E') {
		r++;
		if (*r == '+' || *r == '-')
			r++;
		if (!is_digit(*r))
			return false;
		while (is_digit(*r))
			r++;
	}
	{
		char tmp[64], *end;
		size_t n = (size_t) (r - b);

		if (n >= sizeof(tmp))
			return false;
		memcpy(tmp, b, n);
		tmp[n] = '\0';
		errno = 0;
		v->d = strtod(tmp, &end);
		if (end != tmp + n) /* a locale whose decimal point is not '.' */
			return false;
		if (errno == ERANGE && (v->d == HUGE_VAL || v->d == -HUGE_VAL))
			return false;
	}
	v->type = JV_REAL;
	s->p = r;
	return true;
}

/* A scalar value at s->p (whitespace skipped before).  False for anything else. */
static bool
scan_scalar(scan *s, jval *v)
{
	switch (*s->p) {
	case '"':
		v->type = JV_STRING;
		return scan_str(s, &v->str, &v->len);
	case 't':
		if (strncmp(s->p, "true", 4) != 0)
			return false;
		s->p += 4;
		v->type = JV_TRUE;
		return true;
	case 'f':
		if (strncmp(s->p, "false", 5) != 0)
			return false;
		s->p += 5;
		v->type = JV_FALSE;
		return true;
	case 'n':
		if (strncmp(s->p, "null", 4) != 0)
			return false;
		s->p += 4;
		v->type = JV_NULL;
		return true;
	default:
		return scan_num(s, v);
	}
}

/* A new jansson value for v; NULL when out of memory. */
static json_t *
jval_json(const jval *v)
{
	switch (v->type) {
	case JV_STRING: return json_stringn_nocheck(v->str, v->len);
	case JV_INT: return json_integer(v->i);
	case JV_REAL: return json_real(v->d);
	case JV_TRUE: return json_true();
	case JV_FALSE: return json_false();
	default: return json_null();
	}
}

/*
 * Steps over the separator after a member: true with *more set after ',',
 * clear after the closing brace or bracket close; false for anything else.
 */
static bool
next_member(scan *s, char close, bool *more)
{
	skip_ws(s);
	if (*s->p == ',') {
		s->p++;
		skip_ws(s);
		*more = true;
		return true;
	}
	if (*s->p == close) {
		s->p++;
		*more = false;
		return true;
	}
	return false;
}

/*
 * Opens an object at s->p: true, *more set when it has a member (s->p then at
 * its key), clear for {}.
 */
static bool
open_object(scan *s, bool *more)
{
	if (*s->p != '{')
		return false;
	s->p++;
	skip_ws(s);
	if (*s->p == '}') {
		s->p++;
		*more = false;
		return true;
	}
	*more = true;
	return *s->p == '"';
}

/* A member's key and colon; s->p is left at its value. */
static bool
scan_key(scan *s, char **key, size_t *len)
{
	if (*s->p != '"' || !scan_str(s, key, len))
		return false;
	skip_ws(s);
	if (*s->p != ':')
		return false;
	s->p++;
	skip_ws(s);
	return true;
}

/* A fields object at s->p as a new jansson object; NULL to decline (or out of memory). */
static json_t *
scan_fields(scan *s)
{
	json_t *obj = json_object();
	bool more;

	if (obj == NULL || !open_object(s, &more)) {
		json_decref(obj);
		return NULL;
	}
	while (more) {
		char *key;
		size_t klen;
		jval v;
		json_t *j;

		if (!scan_key(s, &key, &klen) || !scan_scalar(s, &v) || !next_member(s, '}', &more) ||
		    (j = jval_json(&v)) == NULL || json_object_setn_new_nocheck(obj, key, klen, j) != 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

/*
 * A writable copy of text and SCAN_PAD zero bytes after its NUL, in buf
 * (size n) or malloc'd (*heap set); NULL when out of memory.
 */
static char *
copy_text(const char *text, char *buf, size_t n, char **heap)
{
	size_t len = strlen(text);
	char *c = buf;

	*heap = NULL;
	if (len + 1 + SCAN_PAD > n && (c = *heap = malloc(len + 1 + SCAN_PAD)) == NULL)
		return NULL;
	memcpy(c, text, len + 1);
	memset(c + len + 1, 0, SCAN_PAD);
	return c;
}

json_t *
sls_scan_fields(const char *text)
{
	char buf[512], *heap, *c;
	json_t *obj = NULL;
	scan s;

	if (text == NULL || (c = copy_text(text, buf, sizeof(buf), &heap)) == NULL)
		return NULL;
	s.p = c;
	skip_ws(&s);
	if ((obj = scan_fields(&s)) != NULL) {
		skip_ws(&s);
		if (*s.p != '\0') {
			json_decref(obj);
			obj = NULL;
		}
	}
	free(heap);
	return obj;
}

void
sls_flat_free(sls_flat *f)
{
	free(f->heap);
	f->heap = NULL;
	f->n = 0;
}

/*
 * A fields object of at most SLS_FLAT_MAX scalars with distinct names into
 * f, no jansson value made.  False when declined (then f holds nothing to
 * free): the caller falls back to sls_scan_fields or jansson.
 */
bool
sls_scan_flat(const char *text, sls_flat *f)
{
	bool more;
	char *c;
	scan s;

	f->n = 0;
	f->heap = NULL;
	if (text == NULL || (c = copy_text(text, f->buf, sizeof(f->buf), &f->heap)) == NULL)
		return false;
	s.p = c;
	skip_ws(&s);
	if (!open_object(&s, &more))
		goto decline;
	while (more) {
		size_t klen;
		jval v;
		sls_scalar *o;

		if (f->n == SLS_FLAT_MAX || !scan_key(&s, &f->name[f->n], &klen) || !scan_scalar(&s, &v) ||
		    !next_member(&s, '}', &more))
			goto decline;
		for (size_t i = 0; i < f->n; i++) {
			if (strcmp(f->name[i], f->name[f->n]) == 0)
				goto decline; /* jansson's rule (the last value, the first place) is not copied */
		}
		o = &f->val[f->n++];
		memset(o, 0, sizeof(*o));
		switch (v.type) {
		case JV_STRING:
			o->type = SLS_STRING;
			o->str = v.str;
			o->len = v.len;
			break;
		case JV_INT:
			o->type = SLS_INT;
			o->i = v.i;
			break;
		case JV_REAL:
			o->type = SLS_REAL;
			o->d = v.d;
			break;
		case JV_TRUE: o->type = SLS_TRUE; break;
		case JV_FALSE: o->type = SLS_FALSE; break;
		default: o->type = SLS_NULL; break;
		}
	}
	skip_ws(&s);
	if (*s.p == '\0')
		return true;
decline:
	sls_flat_free(f);
	return false;
}

/* ---------------------------------------------------------------- changes frames */

/* The members of a change this scanner reads; the rest are skipped. */
enum { M_SEQ, M_KIND, M_TABLE, M_ROW, M_HLC, M_CID, M_OP, M_FIELDS, M_OTHER };

static int
member(const char *key, size_t len)
{
	switch (len) {
	case 3:
		return memcmp(key, "seq", 3) == 0 ? M_SEQ : memcmp(key, "row", 3) == 0 ? M_ROW
		     : memcmp(key, "hlc", 3) == 0 ? M_HLC : M_OTHER;
	case 4: return memcmp(key, "kind", 4) == 0 ? M_KIND : M_OTHER;
	case 5:
		return memcmp(key, "table", 5) == 0 ? M_TABLE : memcmp(key, "op_id", 5) == 0 ? M_OP : M_OTHER;
	case 6: return memcmp(key, "fields", 6) == 0 ? M_FIELDS : M_OTHER;
	case 9: return memcmp(key, "client_id", 9) == 0 ? M_CID : M_OTHER;
	default: return M_OTHER;
	}
}

/* Appends one name and value to f's flat fields; false when out of memory. */
static bool
fv_push(sls_frame *f, const char *name, const jval *v)
{
	sls_scalar *o;

	if (f->nfv == f->capfv) {
		size_t cap = f->capfv ? f->capfv * 2 : 256;
		const char **fname = realloc(f->fname, cap * sizeof(*fname));
		sls_scalar *fval;

		if (fname == NULL)
			return false;
		f->fname = fname;
		if ((fval = realloc(f->fval, cap * sizeof(*fval))) == NULL)
			return false;
		f->fval = fval;
		f->capfv = cap;
	}
	f->fname[f->nfv] = name;
	o = &f->fval[f->nfv++];
	memset(o, 0, sizeof(*o));
	switch (v->type) {
	case JV_STRING:
		o->type = SLS_STRING;
		o->str = v->str;
		o->len = v->len;
		break;
	case JV_INT:
		o->type = SLS_INT;
		o->i = v->i;
		break;
	case JV_REAL:
		o->type = SLS_REAL;
		o->d = v->d;
		break;
	case JV_TRUE: o->type = SLS_TRUE; break;
	case JV_FALSE: o->type = SLS_FALSE; break;
	default: o->type = SLS_NULL; break;
	}
	return true;
}

/*
 * A change's fields object at s->p into f's flat fields, as c's (which
 * replace any it had: a second "fields" member wins, as in jansson).  Names
 * are checked for repeats up to SLS_FLAT_MAX of them; a longer object is
 * taken as maybe repeating (flat_distinct clear).  False to decline.
 */
static bool
scan_change_fields(scan *s, sls_frame *f, sls_change *c)
{
	bool more;

	c->flat = true;
	c->flat_distinct = true;
	c->foff = f->nfv;
	c->nf = 0;
	if (!open_object(s, &more))
		return false;
	while (more) {
		char *key;
		size_t klen;
		jval v;

		if (!scan_key(s, &key, &klen) || !scan_scalar(s, &v) || !next_member(s, '}', &more) ||
		    !fv_push(f, key, &v))
			return false;
		c->nf++;
		if (c->nf > SLS_FLAT_MAX)
			c->flat_distinct = false;
		else {
			for (size_t i = c->foff; i + 1 < f->nfv && c->flat_distinct; i++) {
				if (strcmp(f->fname[i], key) == 0)
					c->flat_distinct = false;
			}
		}
	}
	return true;
}

/* One change object at s->p into c (fields flat, in f); false to decline. */
static bool
scan_change(scan *s, sls_frame *f, sls_change *c)
{
	jval v[M_OTHER];
	bool have[M_OTHER] = {false}, more;
	uint64_t h;

	memset(c, 0, sizeof(*c));
	if (!open_object(s, &more))
		return false;
	while (more) {
		char *key;
		size_t klen;
		int m;

		if (!scan_key(s, &key, &klen))
			return false;
		m = member(key, klen);
		if (m == M_FIELDS) {
			c->flat = c->flat_distinct = false;
			c->nf = 0;
			have[m] = true;
			if (*s->p == '{') {
				if (!scan_change_fields(s, f, c))
					return false;
			} else if (!scan_scalar(s, &v[m]))
				return false; /* a scalar: no fields */
		} else {
			jval tmp;

			if (!scan_scalar(s, m == M_OTHER ? &tmp : &v[m]))
				return false;
			if (m != M_OTHER)
				have[m] = true;
		}
		if (!next_member(s, '}', &more))
			return false;
	}
	/* As change_ok (rebase.c) checks a change parsed by jansson. */
	if (!have[M_SEQ] || v[M_SEQ].type != JV_INT || v[M_SEQ].i < 0)
		return false;
	for (int m = M_KIND; m <= M_CID; m++) {
		if (!have[m] || v[m].type != JV_STRING)
			return false;
	}
	if (v[M_KIND].len != 6)
		return false;
	if (memcmp(v[M_KIND].str, "delete", 6) == 0)
		c->is_delete = true;
	else if (memcmp(v[M_KIND].str, "upsert", 6) != 0)
		return false;
	if (sl_hlc_parse_n(v[M_HLC].str, v[M_HLC].len, &h) != SL_OK || v[M_CID].len == 0 ||
	    v[M_CID].len > 64)
		return false;
	c->hlc_v = h;
	c->seq = (uint64_t) v[M_SEQ].i;
	c->table = v[M_TABLE].str;
	c->row = v[M_ROW].str;
	c->hlc = v[M_HLC].str;
	c->client_id = v[M_CID].str;
	c->op_id = have[M_OP] && v[M_OP].type == JV_STRING ? v[M_OP].str : NULL;
	return true;
}

void
sls_frame_free(sls_frame *f)
{
	for (size_t i = 0; i < f->n; i++)
		json_decref(f->v[i].fields);
	free(f->v);
	free(f->fname);
	free(f->fval);
	free(f->text);
	json_decref(f->json);
	memset(f, 0, sizeof(*f));
}

/*
 * The fields object of change c of frame f as a jansson object in *out: a
 * new reference (to c->fields, or to an object made from c's flat fields,
 * as jansson would have read the text: a repeated name keeps its first
 * place and its last value), or NULL when c has none.  SL_OK or SL_ENOMEM.
 */
int
sls_change_fields(const sls_frame *f, const sls_change *c, json_t **out)
{
	json_t *obj;

	*out = NULL;
	if (!c->flat) {
		*out = json_incref(c->fields);
		return SL_OK;
	}
	if ((obj = json_object()) == NULL)
		return SL_ENOMEM;
	for (size_t i = c->foff; i < c->foff + c->nf; i++) {
		const sls_scalar *v = &f->fval[i];
		json_t *j;

		switch (v->type) {
		case SLS_STRING: j = json_stringn_nocheck(v->str, v->len); break;
		case SLS_INT: j = json_integer(v->i); break;
		case SLS_REAL: j = json_real(v->d); break;
		case SLS_TRUE: j = json_true(); break;
		case SLS_FALSE: j = json_false(); break;
		default: j = json_null(); break;
		}
		if (j == NULL || json_object_setn_new_nocheck(obj, f->fname[i], strlen(f->fname[i]), j) != 0) {
			json_decref(obj);
			return SL_ENOMEM;
		}
	}
	*out = obj;
	return SL_OK;
}

/* Sizes f's empty arrays for a text of len bytes (above).  False when out of memory. */
static bool
frame_reserve(sls_frame *f, size_t len)
{
	size_t n = len / 128 + 16, nfv = len / 64 + 16;

	if ((f->v = malloc(n * sizeof(*f->v))) == NULL ||
	    (f->fname = malloc(nfv * sizeof(*f->fname))) == NULL ||
	    (f->fval = malloc(nfv * sizeof(*f->fval))) == NULL)
		return false; /* sls_frame_free frees what was made */
	f->cap = n;
	f->capfv = nfv;
	return true;
}

/* Appends a zeroed change to f; NULL when out of memory. */
static sls_change *
frame_push(sls_frame *f)
{
	if (f->n == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		sls_change *v = realloc(f->v, cap * sizeof(*v));

		if (v == NULL)
			return NULL;
		f->v = v;
		f->cap = cap;
	}
	memset(&f->v[f->n], 0, sizeof(f->v[0]));
	return &f->v[f->n++];
}

bool
sls_scan_changes(const char *text, sls_frame *f)
{
	bool more, have_changes = false, have_cursor = false;
	char *heap;
	scan s;

	memset(f, 0, sizeof(*f));
	if (text == NULL || copy_text(text, NULL, 0, &heap) == NULL)
		return false;
	f->text = heap;
	/* Room for the changes and fields a text this long commonly holds (a
	 * change takes over 128 bytes, a field over 64), so that a common frame
	 * is read without growing the arrays; a denser one grows them. */
	if (!frame_reserve(f, strlen(heap)))
		goto decline;
	s.p = heap;
	skip_ws(&s);
	if (!open_object(&s, &more))
		goto decline;
	while (more) {
		char *key;
		size_t klen;
		jval v;

		if (!scan_key(&s, &key, &klen))
			goto decline;
		if (klen == 7 && memcmp(key, "changes", 7) == 0) {
			bool more_c;

			if (have_changes || *s.p != '[')
				goto decline; /* a second list: jansson's last-wins, not worth copying */
			have_changes = true;
			s.p++;
			skip_ws(&s);
			more_c = *s.p != ']';
			if (!more_c)
				s.p++;
			while (more_c) {
				sls_change *c = frame_push(f);

				if (c == NULL || !scan_change(&s, f, c) || !next_member(&s, ']', &more_c))
					goto decline;
			}
		} else {
			if (!scan_scalar(&s, &v))
				goto decline;
			if (klen == 6 && memcmp(key, "cursor", 6) == 0) {
				have_cursor = v.type == JV_INT && v.i >= 0;
				f->cursor = (uint64_t) v.i;
				if (!have_cursor)
					goto decline;
			}
		}
		if (!next_member(&s, '}', &more))
			goto decline;
	}
	skip_ws(&s);
	if (*s.p == '\0' && have_changes && have_cursor)
		return true;
decline:
	sls_frame_free(f);
	return false;
}

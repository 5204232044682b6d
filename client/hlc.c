/*
 * client/hlc.c: the client's hybrid logical clock; contracts in hlc.h.
 *
 * The rules are the server's (pg_ext/hlc.c): now = max(wall << 16, last + 1);
 * observe raises last to the remote value.  The client adds the skew bound on
 * receive, which the server applies to clients' clocks in push.
 */
#include <stddef.h>

#include "hlc.h"

int
sl_hlc_parse_n(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;

	if (s == NULL || len != SL_HLC_TEXT_LEN)
		return SL_EINVAL;
	for (size_t i = 0; i < len; i++) {
		char c = s[i];

		if (c >= '0' && c <= '9')
			v = (v << 4) | (uint64_t) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v = (v << 4) | (uint64_t) (c - 'a' + 10);
		else
			return SL_EINVAL;
	}
	*out = v;
	return SL_OK;
}

int
sl_hlc_parse(const char *s, uint64_t *out)
{
	size_t len = 0;

	if (s == NULL)
		return SL_EINVAL;
	/* Never read past the 17th byte: a long string is refused as it is. */
	while (len <= SL_HLC_TEXT_LEN && s[len] != '\0')
		len++;
	return sl_hlc_parse_n(s, len, out);
}

void
sl_hlc_format(uint64_t hlc, char out[SL_HLC_TEXT_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";

	for (int i = SL_HLC_TEXT_LEN - 1; i >= 0; i--) {
		out[i] = digits[hlc & 0xf];
		hlc >>= 4;
	}
	out[SL_HLC_TEXT_LEN] = '\0';
}

void
sl_hlc_init(sl_hlc_clock *clock, uint64_t last, uint64_t max_skew_ms)
{
	clock->last = last;
	clock->max_skew_ms = max_skew_ms;
	clock->skew_refusals = 0;
}

int
sl_hlc_now(sl_hlc_clock *clock, uint64_t wall_ms, uint64_t *out)
{
	uint64_t wall, next;

	if (wall_ms > SL_HLC_MS_MAX)
		return SL_ERANGE;
	wall = wall_ms << 16;
	if (wall > clock->last)
		next = wall;
	else if (clock->last == UINT64_MAX)
		return SL_ERANGE;
	else
		next = clock->last + 1; /* a full counter carries into the ms part */
	clock->last = next;
	*out = next;
	return SL_OK;
}

int
sl_hlc_observe(sl_hlc_clock *clock, uint64_t remote, uint64_t wall_ms)
{
	uint64_t remote_ms = sl_hlc_ms(remote);

	/* remote_ms - wall_ms > skew, written so that nothing overflows. */
	if (remote_ms > wall_ms && remote_ms - wall_ms > clock->max_skew_ms) {
		clock->skew_refusals++;
		return SL_ESKEW;
	}
	if (remote > clock->last)
		clock->last = remote;
	return SL_OK;
}

/*
 * pocketsphinx-server: keeps one pocketsphinx decoder loaded and recognises utterances sent on
 * stdin, so that a caption does not pay the model's load time (0.4-0.8 s) per utterance.
 *
 * Request (stdin):  uint32 little-endian header, then n int16 LE samples, 16 kHz mono, where n is
 *                   the header's low 31 bits. With the high bit set more of the same utterance
 *                   follows: the samples are decoded as they come (live captions stream an
 *                   utterance while it is spoken) and there is no reply. Without it the
 *                   utterance ends here. Bit 30 asks for a progress line {"at":samples} once
 *                   this chunk is decoded, so the caller knows how far behind the decoder is.
 * Reply (stdout):   one JSON line per utterance {"text":"...","words":[["word",start_s,end_s,prob],...]}.
 * Any other pocketsphinx option (-hmm, -lm, -dict, -beam...) is passed as arguments.
 * Logs go to stderr; stdout carries only replies.
 */
#include <pocketsphinx.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int read_full(void *buf, size_t n) {
    return fread(buf, 1, n, stdin) == n;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

int main(int argc, char **argv) {
    cmd_ln_t *config = cmd_ln_parse_r(NULL, ps_args(), argc, argv, TRUE);
    if (config == NULL) {
        fprintf(stderr, "pocketsphinx-server: bad arguments\n");
        return 2;
    }
    ps_decoder_t *ps = ps_init(config);
    if (ps == NULL) {
        fprintf(stderr, "pocketsphinx-server: the model could not be loaded\n");
        return 3;
    }
    int frame_rate = cmd_ln_int32_r(config, "-frate");
    fprintf(stderr, "pocketsphinx-server: ready\n");
    printf("{\"ready\":true}\n");
    fflush(stdout);

    int16_t *buf = NULL;
    size_t cap = 0;
    uint32_t header;
    int in_utt = 0;
    unsigned long long utt_samples = 0;
    while (read_full(&header, 4)) {
        uint32_t n = header & 0x3fffffffu;
        int more = (header & 0x80000000u) != 0;
        int progress = (header & 0x40000000u) != 0;
        if (n > cap) {
            cap = n;
            buf = realloc(buf, cap * sizeof(int16_t));
            if (buf == NULL) return 4;
        }
        if (!read_full(buf, (size_t)n * sizeof(int16_t))) break;
        /* a whole utterance at once lets the decoder normalise over all of it */
        int whole = !in_utt && !more;
        if (!in_utt) ps_start_utt(ps);
        in_utt = 1;
        if (n > 0) ps_process_raw(ps, buf, n, FALSE, whole);
        utt_samples += n;
        if (more) {
            if (progress) {
                printf("{\"at\":%llu}\n", utt_samples);
                fflush(stdout);
            }
            continue;
        }
        utt_samples = 0;
        ps_end_utt(ps);
        in_utt = 0;
        int32 score;
        const char *hyp = ps_get_hyp(ps, &score);
        printf("{\"text\":");
        json_string(hyp ? hyp : "");
        printf(",\"words\":[");
        int first = 1;
        for (ps_seg_t *seg = ps_seg_iter(ps); seg; seg = ps_seg_next(seg)) {
            const char *word = ps_seg_word(seg);
            /* fillers and sentence marks are not words */
            if (word[0] == '<' || word[0] == '[' || strcmp(word, "<sil>") == 0) continue;
            int sf, ef;
            ps_seg_frames(seg, &sf, &ef);
            int32 ascr, lscr, lback;
            double prob = logmath_exp(ps_get_logmath(ps), ps_seg_prob(seg, &ascr, &lscr, &lback));
            printf("%s[", first ? "" : ",");
            first = 0;
            json_string(word);
            printf(",%.3f,%.3f,%.4f]", (double)sf / frame_rate, (double)(ef + 1) / frame_rate, prob);
        }
        printf("]}\n");
        fflush(stdout);
    }
    free(buf);
    ps_free(ps);
    cmd_ln_free_r(config);
    return 0;
}

/*
 * chat.c: a complete Microbot client in C over include/microbot.h.
 *
 * Registers USERNAME on the server, confirms it and enrols this device with
 * TOTP codes read from standard input (print the secret into any
 * authenticator app; tests compute the codes), connects, sends "hello from
 * C" to PEER, waits for PEER's answer and replies "echo: <answer>", then
 * waits until the server stored the reply and exits 0.
 *
 *   cc -Iinclude examples/chat.c -L../../target/debug -lmicrobot_ffi \
 *      -lpthread -ldl -lm -o chat
 *   ./chat 127.0.0.1:7447 <cert-sha256-hex> alice 'a long password' \
 *      alice.sqlite3 bob
 *
 * Threading: events arrive on the library's event thread (see the header);
 * the callback copies what it needs under a mutex and signals the main
 * thread, which does all the calls that block.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "microbot.h"

#define WAIT_SECONDS 60

struct state {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    const char *peer;
    int connected;
    char received[4096]; /* the peer's first message, once it arrived */
    int has_received;
    char awaited_id[64]; /* the message whose SENT event we wait for */
    int awaited_sent;
};

static void on_event(void *user_data, const MicrobotEvent *event) {
    struct state *st = user_data;
    pthread_mutex_lock(&st->lock);
    switch (event->kind) {
    case MICROBOT_EVENT_KIND_CONNECTED:
        st->connected = 1;
        break;
    case MICROBOT_EVENT_KIND_MESSAGE:
        if (!st->has_received && event->from && strcmp(event->from, st->peer) == 0) {
            snprintf(st->received, sizeof st->received, "%s", event->text ? event->text : "");
            st->has_received = 1;
        }
        break;
    case MICROBOT_EVENT_KIND_SENT:
        if (event->message_id && strcmp(event->message_id, st->awaited_id) == 0) {
            st->awaited_sent = 1;
        }
        break;
    case MICROBOT_EVENT_KIND_REFUSED:
    case MICROBOT_EVENT_KIND_DISCONNECTED:
        fprintf(stderr, "connection: %s\n", event->text ? event->text : "");
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&st->changed);
    pthread_mutex_unlock(&st->lock);
}

/* Waits (lock held) until *flag is set or WAIT_SECONDS pass. */
static int wait_for(struct state *st, const int *flag) {
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += WAIT_SECONDS;
    while (!*flag) {
        if (pthread_cond_timedwait(&st->changed, &st->lock, &deadline) == ETIMEDOUT) {
            return *flag;
        }
    }
    return 1;
}

static int check(MicrobotStatus status, const char *what) {
    if (status == MICROBOT_STATUS_OK) {
        return 1;
    }
    const char *message = microbot_last_error_message();
    fprintf(stderr, "%s failed (status %d): %s\n", what, (int)status, message ? message : "");
    return 0;
}

static int read_code(char *code, size_t size) {
    if (!fgets(code, (int)size, stdin)) {
        fprintf(stderr, "expected a TOTP code on standard input\n");
        return 0;
    }
    code[strcspn(code, "\r\n")] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s ADDRESS FINGERPRINT USERNAME PASSWORD STORE PEER\n", argv[0]);
        return 2;
    }
    const char *address = argv[1], *fingerprint = argv[2], *username = argv[3];
    const char *password = argv[4], *store = argv[5], *peer = argv[6];
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("microbot %s\n", microbot_version());

    MicrobotServer *server = NULL;
    MicrobotAccount *account = NULL;
    char *secret = NULL, *sent_id = NULL, *reply_id = NULL;
    char code[64], reply[4200];
    int ok = 0;
    struct state st;
    memset(&st, 0, sizeof st);
    pthread_mutex_init(&st.lock, NULL);
    pthread_cond_init(&st.changed, NULL);
    st.peer = peer;

    if (!check(microbot_server_new(address, fingerprint, &server), "server")) goto done;
    if (!check(microbot_register(server, username, password, &secret), "register")) goto done;
    printf("secret: %s\n", secret);
    microbot_string_free(secret);
    secret = NULL;
    if (!read_code(code, sizeof code)) goto done;
    if (!check(microbot_confirm_registration(server, username, password, code), "confirm"))
        goto done;
    if (!read_code(code, sizeof code)) goto done;
    if (!check(microbot_account_enrol(server, store, NULL, username, password, code, "chat.c",
                                      &account),
               "enrol"))
        goto done;
    printf("enrolled\n");
    if (!check(microbot_account_set_event_callback(account, on_event, &st), "callback")) goto done;
    if (!check(microbot_account_connect(account), "connect")) goto done;

    pthread_mutex_lock(&st.lock);
    int connected = wait_for(&st, &st.connected);
    pthread_mutex_unlock(&st.lock);
    if (!connected) {
        fprintf(stderr, "not connected after %d s\n", WAIT_SECONDS);
        goto done;
    }
    printf("connected\n");

    if (!check(microbot_account_send_text(account, peer, "hello from C", &sent_id), "send"))
        goto done;
    printf("sent: %s\n", sent_id);

    pthread_mutex_lock(&st.lock);
    int received = wait_for(&st, &st.has_received);
    if (received) snprintf(reply, sizeof reply, "echo: %s", st.received);
    pthread_mutex_unlock(&st.lock);
    if (!received) {
        fprintf(stderr, "no message from %s after %d s\n", peer, WAIT_SECONDS);
        goto done;
    }
    printf("received: %s\n", reply + strlen("echo: "));

    if (!check(microbot_account_send_text(account, peer, reply, &reply_id), "reply")) goto done;
    pthread_mutex_lock(&st.lock);
    snprintf(st.awaited_id, sizeof st.awaited_id, "%s", reply_id);
    int stored = wait_for(&st, &st.awaited_sent);
    pthread_mutex_unlock(&st.lock);
    if (!stored) {
        fprintf(stderr, "reply not stored by the server after %d s\n", WAIT_SECONDS);
        goto done;
    }
    printf("replied: %s\n", reply_id);

    /* A wrong call reports a status and a message instead of crashing. */
    if (microbot_account_send_text(account, "g:not-hex", "x", NULL) !=
        MICROBOT_STATUS_INVALID_ARGUMENT) {
        fprintf(stderr, "a malformed conversation was accepted\n");
        goto done;
    }
    printf("error: %s\n", microbot_last_error_message());
    ok = 1;

done:
    microbot_string_free(sent_id);
    microbot_string_free(reply_id);
    microbot_account_free(account);
    microbot_server_free(server);
    pthread_cond_destroy(&st.changed);
    pthread_mutex_destroy(&st.lock);
    return ok ? 0 : 1;
}

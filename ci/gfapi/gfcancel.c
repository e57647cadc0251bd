/* libgfcancel.so: takes glusterfs 10.3's 10 s glfs_fini() off every libgfapi client it is preloaded
 * into (libvirtd's native gluster pools, qemu-img over gluster://). Built by ci/gfapi/build.sh against
 * the host's own libglusterfs-dev, for libglusterfs0 10.3 only (it reads the library's timer structs),
 * and preloaded by ci/setup-host.sh into the libvirtd it starts itself (not into a systemd libvirtd
 * unless asked: --gfapi-fix). Upstream: gluster/glusterfs#2606 (closed wontfix), the fix proposed in
 * PR #4817 ("timer: really cancel during ctx cleanup"); glusterfs 11.1 has the same wait.
 *
 * Cause: glfs_fini() sets ctx->cleanup_started before PARENT_DOWN; from then on
 * gf_timer_call_cancel() (libglusterfs/src/timer.c:84) returns -1 without removing the event, so
 * rpc_clnt_disable() cannot cancel each brick connection's call_bail timer (re-armed every 10 s,
 * hard-coded in rpc-clnt.c __save_frame/call_bail), that timer keeps its rpc_clnt ref, and
 * protocol/client fini() waits on fini_complete_cond until the timer fires: up to 10 s.
 *
 * During cleanup this shim really cancels: under ctx->lock (so gf_timer_registry_destroy() cannot
 * free the registry meanwhile) and reg->lock it looks for the event in the registry's active list
 * (pointer comparison only: an event that already fired may have been freed, and is never
 * dereferenced); a queued one is unlinked and freed and 0 is returned, so the caller drops the
 * timer's ref itself, exactly as on the non-cleanup path. Anything else: -1, as before.
 * Outside cleanup, and in processes without libglusterfs, it just calls the real function. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <glusterfs/glusterfs.h>
#include <glusterfs/timer.h>

typedef int32_t (*cancel_fn)(glusterfs_ctx_t *, gf_timer_t *);
typedef void (*free_fn)(void *);

int32_t
gf_timer_call_cancel(glusterfs_ctx_t *ctx, gf_timer_t *event)
{
    static cancel_fn real;
    static free_fn gffree;
    gf_timer_registry_t *reg;
    gf_timer_t *trav;
    int found = 0;

    if (!real || !gffree) {
        /* libglusterfs may be dlopen()ed RTLD_LOCAL (qemu's block-gluster module), where
         * RTLD_NEXT cannot see it: ask the loaded library itself */
        void *h = dlopen("libglusterfs.so.0", RTLD_LAZY | RTLD_NOLOAD);
        if (h) {
            real = (cancel_fn)dlsym(h, "gf_timer_call_cancel");
            gffree = (free_fn)dlsym(h, "__gf_free");
            dlclose(h);
        }
        if (!real)
            return -1;
    }
    if (!gffree || ctx == NULL || event == NULL || !ctx->cleanup_started)
        return real(ctx, event);

    LOCK(&ctx->lock);
    reg = ctx->timer;
    if (reg) {
        pthread_mutex_lock(&reg->lock);
        list_for_each_entry(trav, &reg->active, list)
        {
            if (trav == event) {
                found = 1;
                break;
            }
        }
        if (found)
            list_del(&event->list);
        pthread_mutex_unlock(&reg->lock);
    }
    UNLOCK(&ctx->lock);

    if (!found) /* fired (its callback owns the ref) or registry gone */
        return -1;
    gffree(event); /* GF_FREE */
    return 0;
}

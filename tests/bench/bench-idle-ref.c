/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The reference for oobd's idle memory (scripts/bench, section 6): the
 * smallest program that does what idle oobd must keep doing, watch the
 * desktop through libvirt. It links libvirt and nothing else of oob's,
 * opens the connection, looks the domain up, registers for its lifecycle
 * events on libvirt's own event loop and then waits, as oobd's guard does.
 * The bench reads its VmRSS next to oobd's: what libvirt alone costs.
 *
 *   bench-idle-ref URI DOMAIN
 *
 * Prints "ready" on stdout once registered, then runs until killed.
 */

#include <stdio.h>
#include <stdlib.h>

#include <libvirt/libvirt.h>

static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        (void) conn;
        (void) opaque;
        fprintf(stderr, "bench-idle-ref: %s: event %d detail %d\n", virDomainGetName(dom), event, detail);
        return 0;
}

int main(int argc, char **argv) {
        virConnectPtr conn;
        virDomainPtr dom;

        if (argc != 3) {
                fprintf(stderr, "Usage: %s URI DOMAIN\n", argv[0]);
                return 2;
        }
        if (virEventRegisterDefaultImpl() < 0) {
                fprintf(stderr, "bench-idle-ref: cannot set up libvirt's event loop\n");
                return 1;
        }
        conn = virConnectOpen(argv[1]);
        if (!conn) {
                fprintf(stderr, "bench-idle-ref: cannot connect to %s\n", argv[1]);
                return 1;
        }
        dom = virDomainLookupByName(conn, argv[2]);
        if (!dom) {
                fprintf(stderr, "bench-idle-ref: no domain %s on %s\n", argv[2], argv[1]);
                return 1;
        }
        if (virConnectDomainEventRegisterAny(conn, dom, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                             VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), NULL, NULL) < 0) {
                fprintf(stderr, "bench-idle-ref: cannot register for the events of %s\n", argv[2]);
                return 1;
        }
        printf("ready\n");
        fflush(stdout);
        for (;;)
                if (virEventRunDefaultImpl() < 0)
                        return 1;
}

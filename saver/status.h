/* State the control server and the CLI read: per category wrapped, resident
 * and released bytes, pause state, last pause/resume timings.  Provided by
 * the saver (saver/state.c). */
#ifndef MSV_STATUS_H
#define MSV_STATUS_H

#include <jansson.h>

/* {"pid":..,"session":..,"paused":[cats],"categories":{"kv":{"wrapped_bytes",
 * "resident_bytes","released_bytes","count","action","state"}},
 * "last_pause":{"ms","copy_ms","unmap_ms","released_bytes","backup_bytes",
 * "backup_skipped_bytes","ok"},"last_resume":{"ms","copy_ms","map_ms",
 * "restored_bytes","restore_bytes","restore_by":"kernel"|"copy_engines","ok"},
 * "active":..,"redirect":..,"backup_host_bytes":..,"residue":"checkpoint"|"keep"}
 * New reference; NULL on out of memory. */
json_t *_msv_status_json(void);

#endif

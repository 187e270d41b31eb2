# Sourced by build-kernel.sh. with_progress WHAT OBJDIR LOG CMD [ARGS...]: runs CMD with its
# output appended to LOG and, until it ends, reports on stderr the time elapsed and the objects
# (*.o) built so far under OBJDIR: one line updated in place when stderr is a terminal,
# otherwise one line every ${PROGRESS_EVERY:-30} seconds. Returns CMD's exit status.
with_progress() {
    wp_what=$1 wp_objdir=$2 wp_log=$3
    shift 3
    "$@" >> "$wp_log" 2>&1 &
    wp_pid=$!
    wp_t0=$(date +%s) wp_tick=0
    if [ -t 2 ]; then wp_every=2; else wp_every=${PROGRESS_EVERY:-30}; fi
    while kill -0 "$wp_pid" 2>/dev/null; do
        sleep 1
        wp_tick=$((wp_tick + 1))
        [ $((wp_tick % wp_every)) = 0 ] || continue
        wp_el=$(( $(date +%s) - wp_t0 ))
        wp_objs=$(find "$wp_objdir" -name '*.o' 2>/dev/null | wc -l | tr -d ' ')
        wp_msg=$(printf '%s: %dm%02ds elapsed, %s objects built' "$wp_what" \
            $((wp_el / 60)) $((wp_el % 60)) "$wp_objs")
        if [ -t 2 ]; then
            printf '\r%s: %s' "${PROGRESS_PREFIX:-build-kernel}" "$wp_msg" >&2
        else
            echo "${PROGRESS_PREFIX:-build-kernel}: $wp_msg" >&2
        fi
    done
    if [ -t 2 ] && [ "$wp_tick" -ge "$wp_every" ]; then printf '\n' >&2; fi
    wait "$wp_pid"
}

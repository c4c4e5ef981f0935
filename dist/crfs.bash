# bash completion for crfs(1): subcommands, options, pids and slot names.
# Slots and processes are read from the tree at $CRFS_ROOT, else /crfs.

_crfs_pids() {
    local d
    for d in /proc/[0-9]*; do printf '%s\n' "${d#/proc/}"; done
}

_crfs_slots() {
    local root=${CRFS_ROOT:-/crfs} d n
    for d in "$root"/*; do
        n=${d##*/}
        # Process directories are numbers; self is a link; the rest are slots.
        [[ $n == self || $n == '*' || $n != *[!0-9]* ]] && continue
        printf '%s\n' "$n"
    done
}

_crfs() {
    local cur prev words cword
    _init_completion || return
    local subs="dump restore ps show verify checkpoint restore-direct"
    if ((cword == 1)); then
        mapfile -t COMPREPLY < <(compgen -W "$subs --help --version" -- "$cur")
        return
    fi
    local sub=${words[1]} opts="--help" nargs=0
    local i
    for ((i = 2; i < cword; i++)); do
        [[ ${words[i]} == -* ]] || ((nargs++))
    done
    case $sub in
        dump) opts+=" --quiet" ;;
        restore) opts+=" --quiet --shell-job" ;;
        ps | show) opts+=" --json" ;;
        restore-direct)
            opts+=" --pid --writer"
            [[ $prev == --pid || $prev == --writer ]] && return
            ;;
    esac
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$opts" -- "$cur")
        return
    fi
    case $sub:$nargs in
        dump:0) mapfile -t COMPREPLY < <(compgen -W "$(_crfs_pids; _crfs_slots)" -- "$cur") ;;
        ps:0 | checkpoint:0) mapfile -t COMPREPLY < <(compgen -W "$(_crfs_pids)" -- "$cur") ;;
        dump:1 | restore:0 | show:0 | verify:0 | restore-direct:0) _filedir ;;
    esac
}
complete -F _crfs crfs

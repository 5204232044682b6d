# shellcheck shell=bash
# bench/report.sh: the figures table and results.json of `make bench`, shared
# by bench/run.sh and bench/gateway.sh.  Source it; it defines functions and
# the array ROWS, and sets no shell options.
#
# A row is one figure, its fields joined by '|' (so no field may contain '|'):
#   name|label|value|unit|baseline|ratio|target|met|min|max|count|baseline_unit
# name is the JSON key; label is what the table shows; baseline and ratio may
# be empty; target is text such as ">= 0.5x baseline" or empty; met is true,
# false or null; min/max/count are the spread over count trials (empty when a
# figure has none), or only count, a number of samples; baseline_unit is what
# the table prints after the baseline (rows/s when empty, for the figures of
# run.sh written before it existed).
#
#   add_row FIELD...          appends a row to ROWS
#   stats VALUE...            prints "median min max" of the values
#   print_rows_table FOOTER   the table on stdout, then the FOOTER line
#   write_rows_json FILE      the rows as a JSON list of objects with keys
#                             name, value, unit, baseline, ratio, target, met,
#                             plus min, max, trials (or samples) where they apply
#   write_rows_markdown FILE HEADER   the table as Markdown (for the README),
#                             after the HEADER paragraph

ROWS=()

add_row() {
	ROWS+=("$(IFS='|'; echo "$*")")
}

# stats VALUES...: "median min max" of the values (3 decimals).
stats() {
	printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1}
		END {m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2;
		     printf "%.3f %.3f %.3f\n", m, v[1], v[NR]}'
}

fmt_num() { # a number for the table: integers from 100 up, 2 decimals below
	awk -v v="$1" 'BEGIN {if (v >= 100 || v == int(v)) printf "%.0f", v; else printf "%.2f", v}'
}

print_rows_table() {
	local row name label value unit base ratio target met mn mx count bunit v b rt m
	printf '%-38s %-30s %-22s %-8s %-20s %s\n' figure value baseline ratio target met
	printf '%-38s %-30s %-22s %-8s %-20s %s\n' -------------------------------------- ------------------------------ ---------------------- -------- -------------------- -------
	for row in "${ROWS[@]}"; do
		IFS='|' read -r name label value unit base ratio target met mn mx count bunit <<<"$row"
		v="$(fmt_num "$value") $unit"
		if [[ -n $mn ]]; then
			v+=" [$(fmt_num "$mn")-$(fmt_num "$mx")]"
		elif [[ -n $count ]]; then
			v+=" (n=$count)"
		fi
		b="-"; [[ -z $base ]] || b="$(fmt_num "$base") ${bunit:-rows/s}"
		rt="-"; [[ -z $ratio ]] || rt="$(printf '%.2f' "$ratio")x"
		case $met in true) m=met ;; false) m="NOT met" ;; *) m="-" ;; esac
		printf '%-38s %-30s %-22s %-8s %-20s %s\n' "$label" "$v" "$b" "$rt" "${target:--}" "$m"
	done
	[[ -z ${1:-} ]] || echo "$1"
}

write_rows_json() {
	local file=$1 n i sep name label value unit base ratio target met mn mx count bunit
	json_num() { [[ -n $1 ]] && echo "$1" || echo null; }
	json_str() { [[ -n $1 ]] && printf '"%s"' "$1" || echo null; }
	{
		printf '[\n'
		n=${#ROWS[@]}
		for ((i = 0; i < n; i++)); do
			IFS='|' read -r name label value unit base ratio target met mn mx count bunit <<<"${ROWS[i]}"
			printf '  {"name": "%s", "value": %s, "unit": "%s", "baseline": %s, "ratio": %s, "target": %s, "met": %s' \
				"$name" "$value" "$unit" "$(json_num "$base")" "$(json_num "$ratio")" "$(json_str "$target")" "$met"
			if [[ -n $mn ]]; then
				printf ', "min": %s, "max": %s, "trials": %s' "$mn" "$mx" "$count"
			elif [[ -n $count ]]; then
				printf ', "samples": %s' "$count"
			fi
			sep=,
			((i < n - 1)) || sep=""
			printf '}%s\n' "$sep"
		done
		printf ']\n'
	} >"$file.tmp"
	mv "$file.tmp" "$file"
}

write_rows_markdown() {
	local file=$1 header=$2 row name label value unit base ratio target met mn mx count bunit v b rt m
	{
		printf '%s\n\n' "$header"
		printf '| figure | value [min–max] | baseline | ratio | target | met |\n'
		printf '|---|---|---|---|---|---|\n'
		for row in "${ROWS[@]}"; do
			IFS='|' read -r name label value unit base ratio target met mn mx count bunit <<<"$row"
			v="$(fmt_num "$value") $unit"
			if [[ -n $mn ]]; then
				v+=" [$(fmt_num "$mn")–$(fmt_num "$mx")]"
			elif [[ -n $count ]]; then
				v+=" (n=$count)"
			fi
			b="–"; [[ -z $base ]] || b="$(fmt_num "$base") ${bunit:-rows/s}"
			rt="–"; [[ -z $ratio ]] || rt="$(printf '%.2f' "$ratio")×"
			case $met in true) m=yes ;; false) m="**no**" ;; *) m="–" ;; esac
			label=${label#"${label%%[! ]*}"}
			printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$v" "$b" "$rt" "${target:-–}" "$m"
		done
	} >"$file.tmp"
	mv "$file.tmp" "$file"
}

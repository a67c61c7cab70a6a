#!/usr/bin/env bash
# Checks docker/Dockerfile and docker/docker-compose.yml without a Docker engine (none runs on our
# machines or in CI), in a few seconds, without building anything:
#   - the compose file is valid for `docker-compose config` with the settings of docker/.env.example
#     plus generated secrets, and refuses to start while a secret is empty; every image is pinned; the
#     service waits for healthy PostgreSQL, HAPI FHIR and Mailpit;
#   - the Dockerfile: every FROM pinned, a non-root USER, a HEALTHCHECK on /healthz, the build stage's
#     packages equal scripts/install-deps.sh's build packages, the runtime stage installs the Debian
#     package of every shared library the built binary needs (ldd + dpkg -S on this Debian 12 machine),
#     every COPY source exists, the build copies every file CMakeLists.txt reads, and the build stage's
#     CMake configure step succeeds with only the files the stage copies (no compiling);
#   - .dockerignore keeps local secrets and build folders out of the build context;
#   - the service accepts docker/p2p-exchange.json with the compose service's environment
#     (p2p-exchange --check-config).
# The images themselves are never built or run here; docs/operations.md says so.
#   usage: scripts/check-docker.sh [BINARY]   (default: $P2P_BUILD_DIR/p2p-exchange, else build/p2p-exchange)
# shellcheck disable=SC2154  # the Dockerfile's facts are assigned by the generated facts.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

binary=${1:-${P2P_BUILD_DIR:-build}/p2p-exchange}
dockerfile=docker/Dockerfile
compose=docker/docker-compose.yml
env_example=docker/.env.example
service_config=docker/p2p-exchange.json

failures=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
ok() { echo "ok: $*"; }

for tool in docker-compose python3 ldd dpkg openssl; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing; run scripts/install-deps.sh" >&2; exit 1; }
done
python3 -c 'import yaml' 2>/dev/null || { echo "FAIL: python3-yaml is missing (it comes with docker-compose); run scripts/install-deps.sh" >&2; exit 1; }
[ -x "$binary" ] || { echo "FAIL: no service binary at $binary: build it (ninja -C <build dir> p2p-exchange) or pass its path" >&2; exit 1; }
for file in "$dockerfile" "$compose" "$env_example" "$service_config" .dockerignore scripts/install-deps.sh; do
  [ -f "$file" ] || { echo "FAIL: $file is missing" >&2; exit 1; }
done

work=$(mktemp -d /tmp/p2p-check-docker.XXXXXX)
trap 'rm -rf "$work"' EXIT

# Packages of scripts/install-deps.sh that building the binary (Release, tests off) does not need. Every
# other package there must be in the Dockerfile's build stage, and nothing else may be.
declare -A not_for_the_build=(
  [git]="the build does not call git"
  [libgtest-dev]="GoogleTest: the image is built with -DP2P_BUILD_TESTS=OFF"
  [postgresql-15]="the test and scripts/run.sh database server"
  [postgresql-client-15]="psql/pg_dump for the tests and scripts"
  [openssl]="the openssl command line, for making keys in scripts"
  [curl]="the curl command line, for scripts (the runtime stage installs it for HEALTHCHECK)"
  [ca-certificates]="the build downloads nothing over TLS (the runtime stage installs it)"
  [clang-14]="the fuzzers (scripts/fuzz.sh)"
  [rapidjson-dev]="so far only bench-json-libraries (scripts/bench-json.sh, built on demand) uses it"
  [libclang-rt-14-dev]="the fuzzers' libFuzzer and sanitizer runtimes"
  [docker-compose]="this check (docker-compose config)"
  [jq]="JSON on the command line, for the docs examples (scripts/check-docs.sh)"
)
# Libraries every debian:12-slim image has (apt and dpkg need them); sanitizer runtimes only appear in
# -DP2P_SANITIZE=ON builds, never in the image.
base_image_packages="libc6 libgcc-s1 libstdc++6"
sanitizer_libraries='^(libasan|libubsan|liblsan|libtsan)\.so'

# --- 1. The Dockerfile ---------------------------------------------------------------------------------
# Parsed once into shell variables (facts.sh): stages, images, USER, HEALTHCHECK, apt packages, COPY sources.
python3 - "$dockerfile" CMakeLists.txt > "$work/facts.sh" <<'PY' || { echo "FAIL: cannot parse $dockerfile" >&2; exit 1; }
import re, shlex, sys
path, cmakelists = sys.argv[1], sys.argv[2]
logical, current = [], ""
for raw in open(path, encoding="utf-8"):
    line = raw.rstrip("\n")
    if re.match(r"\s*#", line):  # comments, also between continued lines
        continue
    if line.endswith("\\"):
        current += line[:-1] + " "
        continue
    current += line
    if current.strip():
        logical.append(current.strip())
    current = ""
stages = []
for instruction in logical:
    keyword, _, rest = instruction.partition(" ")
    keyword = keyword.upper()
    if keyword == "FROM":
        words = rest.split()
        name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else ""
        stages.append({"image": words[0], "name": name, "instructions": []})
    elif stages:
        stages[-1]["instructions"].append((keyword, rest.strip()))
    else:
        sys.exit(f"{path}: '{keyword}' before the first FROM")

def apt_packages(stage):
    packages = []
    for keyword, rest in stage["instructions"]:
        if keyword != "RUN":
            continue
        for command in re.split(r"&&|;", rest):
            words = shlex.split(command)
            if "apt-get" in words and "install" in words:
                packages += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return packages

def emit(name, values):
    print(f"{name}=(" + " ".join(shlex.quote(v) for v in values) + ")")

names, froms = set(), []
for stage in stages:
    froms.append(stage["image"] + ("\tstage" if stage["image"] in names else "\timage"))
    names.add(stage["name"])
final = stages[-1]
emit("from_images", froms)
emit("final_users", [r for k, r in final["instructions"] if k == "USER"])
emit("final_healthchecks", [r for k, r in final["instructions"] if k == "HEALTHCHECK"])
emit("final_env", [r for k, r in final["instructions"] if k == "ENV"])
emit("final_expose", [r for k, r in final["instructions"] if k == "EXPOSE"])
build = [s for s in stages if s["name"] == "build"]
emit("build_apt", apt_packages(build[0]) if build else [])
emit("runtime_apt", apt_packages(final))
copies = []
for stage in stages:
    for keyword, rest in stage["instructions"]:
        if keyword in ("COPY", "ADD"):
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            copies += [w for w in words if not w.startswith("--")][:-1]
emit("copy_sources", copies)
# The build stage's own COPYs (source... dest) and the first command of its cmake RUN (the configure step).
build_copies, configure = [], ""
for keyword, rest in (build[0]["instructions"] if build else []):
    words = shlex.split(rest)
    if keyword == "COPY" and not any(w.startswith("--from") for w in words):
        words = [w for w in words if not w.startswith("--")]
        build_copies += [f"{source}\t{words[-1]}" for source in words[:-1]]
    if keyword == "RUN" and "cmake -S" in rest and not configure:
        configure = rest.split("&&")[0].strip()
emit("build_copies", build_copies)
print(f"build_configure={shlex.quote(configure)}")

# Repository paths CMakeLists.txt reads when configured as the image builds it (tests and fuzzers off).
kept, skipping = [], 0
for line in open(cmakelists, encoding="utf-8"):
    line = line.split("#", 1)[0]
    if re.match(r"\s*option\s*\(", line):  # option descriptions are prose
        continue
    opens = re.match(r"\s*if\s*\(\s*(P2P_BUILD_TESTS|P2P_FUZZ)\s*\)", line)
    if skipping or opens:
        if re.match(r"\s*if\s*\(", line):
            skipping += 1
        if re.match(r"\s*endif\s*\(", line):
            skipping -= 1
        continue
    kept.append(line)
paths = sorted(set(re.sub(r"^\$\{CMAKE_SOURCE_DIR\}/", "", m)
                   for m in re.findall(r"(?:\$\{CMAKE_SOURCE_DIR\}/)?[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+", "".join(kept))))
emit("cmake_paths", paths)
PY
# shellcheck disable=SC1091
source "$work/facts.sh"

# Every FROM is pinned to a version (a tag with major.minor, or a digest), or names an earlier stage.
for entry in "${from_images[@]}"; do
  image=${entry%$'\t'*}
  [ "${entry#*$'\t'}" = stage ] && continue
  if [[ $image == *@sha256:* || $image =~ :[^:/]*[0-9]+\.[0-9]+ ]]; then
    ok "FROM $image is pinned"
  else
    fail "$dockerfile: FROM $image is not pinned: use a version tag with major.minor (e.g. debian:12.12) or a digest"
  fi
done

final_user=${final_users[-1]:-}
if [ -z "$final_user" ]; then
  fail "$dockerfile: the runtime stage has no USER: the service must not run as root"
elif [ "${final_user%%:*}" = root ] || [ "${final_user%%:*}" = 0 ]; then
  fail "$dockerfile: the runtime stage runs as $final_user: use an unprivileged user"
else
  ok "runtime stage runs as USER $final_user"
fi
healthcheck="${final_healthchecks[*]}"
if [[ $healthcheck == *CMD*"/healthz"* ]]; then
  ok "HEALTHCHECK on /healthz"
else
  fail "$dockerfile: the runtime stage needs a HEALTHCHECK that asks /healthz (found: '${healthcheck:-none}')"
fi
if [[ " ${final_env[*]} " == *" P2P_HTTP_HOST=0.0.0.0"* ]]; then
  ok "ENV P2P_HTTP_HOST=0.0.0.0"
else
  fail "$dockerfile: the runtime stage must set ENV P2P_HTTP_HOST=0.0.0.0 (the service listens on loopback by default)"
fi
if [ ${#final_expose[@]} -gt 0 ]; then
  ok "EXPOSE ${final_expose[*]}"
else
  fail "$dockerfile: the runtime stage must EXPOSE the service port"
fi

# The build stage installs exactly the build packages of scripts/install-deps.sh.
install_deps_packages=$(sed -n '/^PACKAGES=(/,/^)/p' scripts/install-deps.sh | sed -e '1d;$d' -e 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
[ -n "$install_deps_packages" ] || fail "scripts/install-deps.sh: no PACKAGES=( ... ) list found"
build_stage_packages=$(printf '%s\n' "${build_apt[@]}" | sed '/^$/d' | sort -u)
[ -n "$build_stage_packages" ] || fail "$dockerfile: no apt-get install in a stage named 'build'"
expected_build_packages=$(for package in $install_deps_packages; do
  [ -n "${not_for_the_build[$package]+x}" ] || echo "$package"
done | sort -u)
missing=$(comm -23 <(echo "$expected_build_packages") <(echo "$build_stage_packages"))
extra=$(comm -13 <(echo "$expected_build_packages") <(echo "$build_stage_packages"))
for package in $missing; do
  fail "$dockerfile: the build stage does not install $package, which scripts/install-deps.sh installs; add it to the build stage, or, if building the binary does not need it, to not_for_the_build in scripts/check-docker.sh with the reason"
done
for package in $extra; do
  fail "$dockerfile: the build stage installs $package, which scripts/install-deps.sh does not; add it there too (or remove it here)"
done
[ -n "$missing$extra" ] || ok "build stage packages = scripts/install-deps.sh less tools and test packages ($(echo "$build_stage_packages" | wc -l) packages)"

# The runtime stage installs the package of every library the binary needs.
runtime_packages=$(printf '%s\n' "${runtime_apt[@]}" | sed '/^$/d' | sort -u)
[ -n "$runtime_packages" ] || fail "$dockerfile: the runtime stage installs no packages"
ldd "$binary" > "$work/ldd" 2>&1 || { fail "ldd $binary failed: $(cat "$work/ldd")"; : > "$work/ldd"; }
if grep -q "not found" "$work/ldd"; then
  fail "ldd $binary: missing libraries on this machine: $(grep 'not found' "$work/ldd" | tr -s ' \t' ' ')"
fi
# Library path -> Debian package, with one dpkg -S for all (usrmerge: dpkg may know /lib/... or /usr/lib/...).
declare -A owner_of=()
mapfile -t library_paths < <(awk '$2 == "=>" && $3 ~ /^\// {print $3}' "$work/ldd")
candidates=()
for path in "${library_paths[@]}"; do
  candidates+=("$path" "/usr$path" "${path#/usr}" "$(readlink -f "$path")")
done
while IFS= read -r line; do
  owner=${line%%: *}
  owner_of[${line#*: }]=${owner%%:*}
done < <(dpkg -S "${candidates[@]}" 2>/dev/null | grep -v '^diversion' || true)
package_of() {
  local path=$1 candidate
  for candidate in "$path" "/usr$path" "${path#/usr}" "$(readlink -f "$path")"; do
    [ -n "${owner_of[$candidate]:-}" ] && { echo "${owner_of[$candidate]}"; return 0; }
  done
  return 1
}
needed=$(LC_ALL=C objdump -p "$binary" 2>/dev/null | awk '/NEEDED/ {print $2}' || true)
if [ -z "$needed" ]; then
  needed=$(awk '/=>/ {print $1}' "$work/ldd")  # no objdump (binutils): check every library ldd lists
fi
# The packages the runtime ones pull in (Depends and Pre-Depends, recursively), from dpkg's database of
# this machine, which has them all installed (the build packages depend on them): no apt lists needed.
# shellcheck disable=SC2086
python3 - $runtime_packages $base_image_packages > "$work/closure" 2> "$work/closure-err" <<'PY' \
  || fail "$dockerfile: $(cat "$work/closure-err")"
import re, sys
installed, provides = {}, {}
for stanza in open("/var/lib/dpkg/status", encoding="utf-8").read().split("\n\n"):
    fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
    if "Package" not in fields or "install ok installed" not in fields.get("Status", ""):
        continue
    name = fields["Package"]
    installed[name] = ", ".join(x for x in (fields.get("Pre-Depends"), fields.get("Depends")) if x)
    for virtual in filter(None, (p.strip().split(" ")[0] for p in fields.get("Provides", "").split(","))):
        provides.setdefault(virtual, []).append(name)
def resolve(alternatives):
    for alternative in alternatives.split("|"):
        name = alternative.strip().split(" ")[0].split(":")[0]
        if name in installed:
            return [name]
        if name in provides:
            return provides[name][:1]
    return []
missing = [p for p in sys.argv[1:] if p not in installed]
if missing:
    sys.exit("the runtime stage installs " + ", ".join(missing) + ", not installed on this machine, so its libraries "
             "cannot be checked: is it a Debian 12 package (apt-cache show NAME)? scripts/install-deps.sh installs the rest")
closure, todo = set(), list(sys.argv[1:])
while todo:
    name = todo.pop()
    if name in closure:
        continue
    closure.add(name)
    for alternatives in filter(None, (d.strip() for d in installed[name].split(","))):
        todo += resolve(alternatives)
print("\n".join(sorted(closure)))
PY
declare -A used_packages=()
while read -r library arrow path _; do
  [ "$arrow" = "=>" ] || continue
  [[ $library =~ $sanitizer_libraries ]] && continue
  if ! package=$(package_of "$path"); then
    fail "no Debian package owns $path ($library, needed by $binary): install the library from a Debian package"
    continue
  fi
  used_packages[$package]=1
  direct=no
  for name in $needed; do [ "$name" = "$library" ] && direct=yes; done
  if [ "$direct" = yes ]; then
    if grep -qx "$package" <(echo "$runtime_packages"; echo "$base_image_packages" | tr ' ' '\n'); then
      ok "$library -> $package (runtime stage)"
    else
      fail "$dockerfile: the binary links $library (package $package), but the runtime stage does not install $package"
    fi
  elif ! grep -qx "$package" "$work/closure"; then
    fail "$dockerfile: $library (package $package, needed through another library) is not pulled in by the runtime packages; add $package to the runtime stage"
  fi
done < "$work/ldd"
for package in $runtime_packages; do
  case $package in curl | ca-certificates) continue ;; esac
  [ -n "${used_packages[$package]+x}" ] \
    || echo "note: the runtime stage installs $package, which $binary does not link (yet)"
done

# COPY sources exist, and the build stage copies every repository file CMakeLists.txt reads.
for source in "${copy_sources[@]}"; do
  if compgen -G "$source" >/dev/null; then ok "COPY $source exists"; else fail "$dockerfile: COPY source $source does not exist in the repository"; fi
done
for used in "${cmake_paths[@]}"; do
  [ -e "$used" ] || continue  # not a repository path (e.g. a generated file)
  covered=no
  for source in "${copy_sources[@]}"; do
    source=${source%/}
    if [ "$used" = "$source" ] || [[ $used == "$source"/* ]] || [ "$source" = . ]; then covered=yes; fi
  done
  [ "$covered" = yes ] || fail "$dockerfile: CMakeLists.txt reads $used, but the build stage does not COPY it"
done

# The build stage's CMake configure step succeeds with only what the stage copies (CMake checks that
# every source file it is given exists): a file missing from the image's COPYs fails here, not in a build.
if [ -z "$build_configure" ]; then
  fail "$dockerfile: the build stage has no RUN cmake -S ... configure step"
else
  mkdir -p "$work/context"
  for entry in "${build_copies[@]}"; do
    source=${entry%$'\t'*} destination=${entry#*$'\t'}
    if [ -d "$source" ]; then
      mkdir -p "$work/context/$destination" && cp -R "$source/." "$work/context/$destination"
    elif [ -e "$source" ]; then
      case $destination in */ | .) mkdir -p "$work/context/$destination" ;; *) mkdir -p "$work/context/$(dirname "$destination")" ;; esac
      cp "$source" "$work/context/$destination"
    fi
  done
  if (cd "$work/context" && eval "$build_configure") > "$work/configure.log" 2>&1; then
    ok "the build stage's '$build_configure' succeeds with only the files it copies"
  else
    fail "$dockerfile: the build stage's '$build_configure' fails with only the files it copies:
$(grep -E 'Error|error|Cannot find' "$work/configure.log" | head -n 10)"
  fi
fi

# --- 2. .dockerignore keeps secrets and local builds out of the context ------------------------------
for pattern in .git .data 'build' 'build-*' '**/node_modules' docker/.env; do
  grep -qxF "$pattern" .dockerignore || fail ".dockerignore must list $pattern (it would otherwise be sent to the Docker daemon and could end up in a layer)"
done

# --- 3. The compose file ------------------------------------------------------------------------------
# The settings of docker/.env.example, each empty secret filled as docs/operations.md tells the operator.
sed -e "s|^P2P_DB_PASSWORD=\$|P2P_DB_PASSWORD=$(openssl rand -hex 24)|" \
    -e "s|^HAPI_DB_PASSWORD=\$|HAPI_DB_PASSWORD=$(openssl rand -hex 24)|" \
    -e "s|^P2P_API_KEYS=\$|P2P_API_KEYS=$(openssl rand -hex 32)|" \
    -e "s|^P2P_TOKEN_ENCRYPTION_KEY=\$|P2P_TOKEN_ENCRYPTION_KEY=$(openssl rand -base64 32)|" \
    -e "s|^P2P_HOOK_SECRET=\$|P2P_HOOK_SECRET=$(openssl rand -hex 32)|" \
    "$env_example" > "$work/env"
compose_config() {  # env file -> resolved compose file on stdout; a clean environment, so no stray variable counts
  env -i PATH="$PATH" HOME="$work" docker-compose --env-file "$1" -f "$root/$compose" config
}
if compose_config "$work/env" > "$work/compose.yml" 2> "$work/compose.err"; then
  ok "docker-compose config accepts $compose with $env_example and its secrets filled in"
else
  fail "docker-compose config rejects $compose: $(cat "$work/compose.err")"
fi
if compose_config "$root/$env_example" > /dev/null 2> "$work/compose-empty.err"; then
  fail "$compose starts with the empty secrets of $env_example: use \${VAR:?message} for every secret"
elif grep -q "Missing mandatory value" "$work/compose-empty.err"; then
  ok "compose refuses to start while a secret is empty ($(grep -o 'set [A-Z0-9_]* in docker/.env' "$work/compose-empty.err" | head -n 1))"
else
  fail "docker-compose config failed on $env_example for another reason than a missing secret: $(cat "$work/compose-empty.err")"
fi
for secret in $(grep -oE '^[A-Z0-9_]+=$' "$env_example" | tr -d =); do
  case $secret in P2P_RETIRED_TOKEN_ENCRYPTION_KEYS) continue ;; esac
  grep -qE "\\\$\\{$secret:\\?" "$compose" || fail "$compose: $secret is empty in $env_example but not required with \${$secret:?...}"
done
if [ -s "$work/compose.yml" ]; then
  python3 - "$work/compose.yml" "$root/docker" > "$work/compose-checks" <<'PY' || true
import os, re, sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
compose_dir = sys.argv[2]
services = config.get("services", {})
def say(ok, message): print(("ok: " if ok else "FAIL: ") + message)
for name, service in services.items():
    image = service.get("image", "")
    if "build" in service:
        context = service["build"]["context"]
        dockerfile = os.path.join(context, service["build"].get("dockerfile", "Dockerfile"))
        say(os.path.isfile(dockerfile), f"service {name} builds {os.path.relpath(dockerfile, os.path.dirname(compose_dir))}")
        continue
    say("@sha256:" in image or re.search(r":[^:/]*\d+\.\d+", image) is not None,
        f"service {name}: image {image} is pinned to a version")
for name in ("postgres", "mailpit", "hapi"):
    say(name in services, f"service {name} is defined")
app = services.get("p2p-exchange", {})
depends = app.get("depends_on", {})
for name in ("postgres", "hapi-ready", "mailpit"):
    condition = depends.get(name, {}).get("condition") if isinstance(depends, dict) else None
    say(condition == "service_healthy", f"p2p-exchange waits for {name}: condition {condition}")
    say("healthcheck" in services.get(name, {}), f"service {name} has a health check")
probe = " ".join(services.get("hapi-ready", {}).get("healthcheck", {}).get("test", []))
say("http://hapi:8080/fhir/metadata" in probe, "hapi-ready probes hapi's /fhir/metadata")
hapi_env = services.get("hapi", {}).get("environment", {})
say(hapi_env.get("hapi.fhir.subscription.resthook_enabled") == "true", "HAPI delivers rest-hook subscriptions")
say("pg_isready" in services.get("postgres", {}).get("healthcheck", {}).get("test", []), "postgres health check is pg_isready")
volumes = " ".join(services.get("postgres", {}).get("volumes", []))
say(re.search(r"^p2p-db:/var/lib/postgresql/data", volumes) is not None and "p2p-db" in config.get("volumes", {}),
    "postgres keeps its data in the named volume p2p-db")
for mount in app.get("volumes", []):
    source = mount.split(":")[0]
    say(os.path.exists(source), f"p2p-exchange mounts {source}")
env = app.get("environment", {})
for key in ("P2P_DATABASE_URL", "P2P_API_KEYS", "P2P_TOKEN_ENCRYPTION_KEY", "P2P_RETIRED_TOKEN_ENCRYPTION_KEYS",
            "P2P_FHIR_PERSISTENCE_URL", "P2P_NOTIFICATIONS_ENABLED", "P2P_PUBLIC_BASE_URL", "P2P_HOOK_SECRET",
            "P2P_SMTP_URL", "P2P_MAIL_FROM", "P2P_MAIL_ADMINS"):
    if key not in env:
        say(False, f"p2p-exchange's environment sets {key}")
say(env.get("P2P_FHIR_PERSISTENCE_URL") == "http://hapi:8080/fhir", "p2p-exchange writes to hapi (P2P_FHIR_PERSISTENCE_URL)")
with open(sys.argv[1] + ".service-env", "w") as out:
    for key, value in env.items():
        out.write(f"{key}={'' if value is None else value}\n")
PY
  while read -r line; do
    case $line in FAIL:*) fail "$compose: ${line#FAIL: }" ;; *) echo "$line" ;; esac
  done < "$work/compose-checks"
fi

# --- 4. The service accepts its compose configuration -------------------------------------------------
if [ -s "$work/compose.yml.service-env" ]; then
  mapfile -t service_env < "$work/compose.yml.service-env"
  if env -i PATH="$PATH" "${service_env[@]}" "$binary" --check-config --config "$service_config" > "$work/check-config" 2>&1; then
    ok "$(basename "$binary") --check-config --config $service_config with the compose environment: $(tr -d '\n' < "$work/check-config")"
  else
    fail "$(basename "$binary") --check-config --config $service_config rejects the compose environment:
$(cat "$work/check-config")"
  fi
else
  fail "no environment for the p2p-exchange service could be read from the compose file"
fi

if [ "$failures" -gt 0 ]; then
  echo "check-docker: $failures problem(s) found" >&2
  exit 1
fi
echo "check-docker: all checks passed (the images were not built or run: there is no Docker engine here)"

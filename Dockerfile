# poe-proxy as a container: one static-ish binary on a distroless base, no shell, no key inside.
#   docker build -t poe-proxy .
#   docker run --rm -p 127.0.0.1:8080:8080 --env-file .env poe-proxy
# Secrets come from the environment at run time (--env-file, compose env_file); .dockerignore keeps
# .env out of the build context, so no key can enter a layer.

FROM denoland/deno:2.9.6 AS build
WORKDIR /src
ENV DENO_NO_UPDATE_CHECK=1 NO_COLOR=1
# Dependencies first, from the lock file only, so this layer is cached until deno.lock changes.
COPY deno.json deno.lock ./
RUN deno install --frozen
COPY main.ts models.yaml ./
COPY lib/ ./lib/
# The same flags as `deno task compile:host`: --allow-net/env/read and the V8 flags baked in,
# models.yaml embedded.
RUN deno task compile:host && ./dist/poe-proxy --version

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/dist/poe-proxy /poe-proxy
# The path the earlier Python proxy's .env names (MODELS_FILE=/app/models.yaml): such a file keeps
# working, and mounting your own models.yaml there replaces the defaults.
COPY --from=build /src/models.yaml /app/models.yaml
ENV HOST=0.0.0.0 PORT=8080
EXPOSE 8080
USER nonroot
# The image has no shell or curl: the binary checks itself (exit 0 healthy, 1 not).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/poe-proxy", "healthcheck"]
ENTRYPOINT ["/poe-proxy"]

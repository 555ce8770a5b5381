# A small image of cognito-onboard that runs as a non-root user. Its state is the DynamoDB table
# cognito-onboard (a container's disk is gone after each run; create the table once with
# `state init`), and its reports go to a volume at /data.
# Build: docker build --build-arg COGNITO_ONBOARD_COMMIT=$(git rev-parse --short=12 HEAD) -t cognito-onboard .
# Run:   docker run --rm -v onboard-data:/data -v "$PWD/providers.csv:/input/providers.csv:ro" \
#          -e COGNITO_USER_POOL_ID -e AWS_REGION -e AWS_ACCESS_KEY_ID -e AWS_SECRET_ACCESS_KEY -e AWS_SESSION_TOKEN \
#          cognito-onboard run /input/providers.csv
# One machine only: -e COGNITO_ONBOARD_STATE=/data/state.db keeps the state in a file on the volume.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
# The build context has no .git (see .dockerignore): the commit for --version comes in here.
ARG COGNITO_ONBOARD_COMMIT=unknown
ENV COGNITO_ONBOARD_COMMIT=${COGNITO_ONBOARD_COMMIT}
RUN cargo build --release --locked --bin cognito-onboard \
    && cp target/release/cognito-onboard /cognito-onboard

FROM debian:bookworm-slim
# CA certificates for HTTPS to AWS; nothing else.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 onboard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home onboard \
    && mkdir -p /data \
    && chown 10001:10001 /data
COPY --from=build /cognito-onboard /usr/local/bin/cognito-onboard
USER 10001:10001
WORKDIR /data
# The reports (and a state file, if one is chosen instead of the table) must outlive the
# container: keep /data on a volume.
VOLUME ["/data"]
ENV COGNITO_ONBOARD_STATE=dynamodb://cognito-onboard
ENTRYPOINT ["cognito-onboard"]
CMD ["--help"]

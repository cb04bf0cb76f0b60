# Sourced by scripts/test: system packages and local services for the suite.
. scripts/apt.sh

ensure_system_packages() {
  # tesseract: the peer engine of `ocrq eval`; DejaVu: rendered test fixtures;
  # chromium + its driver: tests/integration/test_ui.py drives the web page headless;
  # prometheus: its promtool unit-tests compose/prometheus/alerts.yml (test_alert_rules.py);
  # docker-compose: `docker-compose config` validates compose/docker-compose.yml
  # (test_deploy.py; no Docker engine needed);
  # nginx: tests/faults/test_slow_uploads.py runs compose/nginx.conf (the intake's
  # front) on a free port of its own;
  # redis/mariadb: only installed when no server answers on their ports.
  local want=(tesseract-ocr tesseract-ocr-eng fonts-dejavu-core python3-venv
              chromium chromium-driver prometheus docker-compose nginx)
  port_open 6379 || want+=(redis-server)
  port_open 3306 || want+=(mariadb-server)
  local had_nginx=1
  dpkg -s nginx >/dev/null 2>&1 || had_nginx=0
  apt_install "${want[@]}"
  if [ "$had_nginx" = 0 ] && dpkg -s nginx >/dev/null 2>&1; then
    # The packaged service apt may have started on port 80 is not ours to leave running.
    as_root systemctl disable --now nginx >/dev/null 2>&1 \
      || as_root service nginx stop >/dev/null 2>&1 || true
  fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 60); do port_open "$1" && return 0; sleep 0.5; done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}

ensure_redis() {
  port_open 6379 && return 0
  echo "starting redis-server" >&2
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ocrq-test.log
  wait_port 6379
}

ensure_mariadb() {
  if ! port_open 3306; then
    echo "starting mariadb" >&2
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
    wait_port 3306
  fi
  # The suite connects as OCRQ_TEST_MYSQL_URL (default root without password
  # on 127.0.0.1, as on CI). Where root uses socket auth (a fresh Debian
  # install), create a dedicated user and point the suite at it.
  if [ -z "${OCRQ_TEST_MYSQL_URL:-}" ] && ! mysql_ok root ""; then
    as_root mariadb -e "CREATE USER IF NOT EXISTS 'ocrq_test'@'127.0.0.1' IDENTIFIED BY 'ocrq_test';
      GRANT ALL PRIVILEGES ON *.* TO 'ocrq_test'@'127.0.0.1'; FLUSH PRIVILEGES;"
    export OCRQ_TEST_MYSQL_URL="mysql+pymysql://ocrq_test:ocrq_test@127.0.0.1:3306"
  fi
}

mysql_ok() {
  .venv/bin/python - "$1" "$2" <<'PY' 2>/dev/null
import sys, pymysql
pymysql.connect(host="127.0.0.1", port=3306, user=sys.argv[1], password=sys.argv[2]).close()
PY
}

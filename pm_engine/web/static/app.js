// pm-engine dashboard: fetch /dashboard/data every few seconds and update the page in place.
// Every value is written with textContent (never as HTML), so nothing a signal carries can run here.
"use strict";
(function () {
  const root = document.getElementById("dashboard");
  const csrf = root.dataset.csrf || "";
  const refreshMs = Number(root.dataset.refreshMs || 3000);
  let range = root.dataset.range || "month";
  let period = "day";
  let last = null;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }

  function fill(tableId, rows, cells) {
    const body = document.querySelector("#" + tableId + " tbody");
    const fresh = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      for (const cell of cells(row)) tr.appendChild(cell);
      fresh.appendChild(tr);
    }
    if (!rows.length) {
      const tr = document.createElement("tr");
      const td = el("td", "none", "muted");
      td.colSpan = document.querySelectorAll("#" + tableId + " thead th").length;
      tr.appendChild(td);
      fresh.appendChild(tr);
    }
    body.replaceWith(fresh);
  }

  function list(id, items, text) {
    const ul = document.getElementById(id);
    ul.replaceChildren(...(items.length ? items.map((x) => el("li", text(x))) : [el("li", "none", "muted")]));
  }

  const signed = (v) => el("td", v, Number(v) > 0 ? "pos" : Number(v) < 0 ? "neg" : "");
  const money = (v) => (v === null || v === undefined ? "–" : Number(v).toLocaleString("en-IN", {minimumFractionDigits: 2, maximumFractionDigits: 2}));
  // a time exactly as the server sent it (microseconds and offset kept, "T" shown as a space), so it
  // can be pasted into `pm-engine status --as-of` / `report --from` and mean the same instant
  const time = (v) => (v ? String(v).replace("T", " ") : "–");

  function drawCurve(points) {
    const svg = document.getElementById("curve");
    const ns = "http://www.w3.org/2000/svg";
    svg.replaceChildren();
    document.getElementById("curve-points").textContent = points.length + " points";
    if (points.length < 1) return;
    const closed = points.map((p) => Number(p.closed_equity));
    const open = points.map((p) => Number(p.open_equity));
    const lo = Math.min(...closed, ...open), hi = Math.max(...closed, ...open);
    const pad = (hi - lo) * 0.05 || 1;
    const x = (i) => (points.length === 1 ? 300 : (i * 600) / (points.length - 1));
    const y = (v) => 215 - ((v - (lo - pad)) / (hi - lo + 2 * pad)) * 210;
    // drawdown on the trading curve: the peak of equity minus the net capital flows so far, in today's money
    let peak = -Infinity, net = 0;
    const peaks = closed.map((v, i) => {
      net += Number(points[i].flow || 0);
      peak = Math.max(peak, v - net);
      return peak + net;
    });
    const band = closed.map((v, i) => x(i) + "," + y(peaks[i])).concat(
      closed.map((v, i) => x(i) + "," + y(v)).reverse());
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("points", band.join(" "));
    area.setAttribute("fill", "#f5b3b3");
    svg.appendChild(area);
    for (const [series, colour] of [[open, "#8250df"], [closed, "#1f6feb"]]) {
      const line = document.createElementNS(ns, "polyline");
      line.setAttribute("points", series.map((v, i) => x(i) + "," + y(v)).join(" "));
      line.setAttribute("fill", "none");
      line.setAttribute("stroke", colour);
      line.setAttribute("stroke-width", "2");
      line.setAttribute("vector-effect", "non-scaling-stroke");
      svg.appendChild(line);
    }
  }

  // the contract a position holds (a synthetic one: its two option legs under it)
  function contract(p) {
    const cell = el("td", p.contract ?? "–", "contract");
    if (p.ce_symbol) cell.appendChild(el("div", p.ce_symbol + " / " + p.pe_symbol, "muted"));
    return cell;
  }

  // expiry, days to it, and a flag once the roll date has come (the position should be in the next contract)
  function expiry(p) {
    if (!p.expiry) return el("td", "–");
    const cell = el("td", p.expiry + " (" + p.days_to_expiry + " d)");
    if (p.roll_due) cell.appendChild(el("div", "roll due since " + p.roll_date, "blocked roll-due"));
    return cell;
  }

  function renderBroker(broker) {
    const badge = document.getElementById("broker-badge");
    const since = broker && broker.seconds_since !== null && broker.seconds_since !== undefined
      ? " for " + Math.round(broker.seconds_since) + " s" : "";
    badge.textContent = broker ? broker.text + (broker.state === "ok" || broker.state === "paper" ? "" : since) : "–";
    badge.className = "badge broker " + (broker ? broker.state : "");
  }

  function render(data) {
    last = data;
    const s = data.status;
    document.getElementById("closed-equity").textContent = money(s.closed_equity);
    document.getElementById("open-equity").textContent = money(s.open_equity);
    document.getElementById("blended-equity").textContent = money(s.blended_equity);
    const mode = data.mode;
    for (const id of ["mode", "mode-badge"]) document.getElementById(id).textContent = mode.mode;
    document.getElementById("mode-badge").className = "badge " + mode.mode;
    document.getElementById("mode-detail").textContent =
      (mode.changed_by === "migration 004" ? "the default (never changed)"  // the table's first row: for a user, the default
        : "set by " + mode.changed_by + " at " + time(mode.changed_at)) + (mode.reason ? " — " + mode.reason : "");
    const until = (t) => !t || t.startsWith("9999") || t === "infinity" ? "until unlocked" : "until " + time(t);
    list("locks", data.locks, (l) => l.instrument + " " + until(l.locked_until) + ": " + l.reason + " (" + l.source + ")");
    fill("positions", s.positions, (p) => {
      const exit = el("button", "Exit", "exit");
      exit.dataset.position = p.position_id;
      const cell = el("td");
      cell.appendChild(exit);
      return [el("td", p.instrument), el("td", p.layer), contract(p), expiry(p), el("td", p.lots), el("td", p.entry_price),
              el("td", p.current_stop), el("td", p.distance_to_stop_r ?? "–"), signed(p.unrealized_pnl),
              el("td", p.risk_pct), el("td", p.limiter ?? "–"), cell];
    });
    fill("pyramiding", s.pyramiding, (p) => [el("td", p.instrument), el("td", p.base_position_id ?? "–"),
      el("td", p.pyramids), el("td", p.last_pyramid_price ?? "–")]);
    // each group's contract and its roll: due once the roll date has come, the state while it moves
    fill("rollover", data.rollover || [], (g) => [el("td", g.instrument), el("td", g.from_symbol),
      el("td", g.roll_date), el("td", String(g.days_to_roll), g.due ? "blocked" : ""),
      el("td", g.roll_state + (g.due && g.roll_state === "none" ? " (due)" : ""), "roll-" + g.roll_state),
      el("td", g.to_symbol)]);
    fill("signals", data.signals, (x) => [el("td", time(x.processed_at)), el("td", x.instrument),
      el("td", x.signal_type), el("td", x.position), el("td", x.processing_status, x.processing_status),
      el("td", x.reason, "reason")]);
    const st = data.stats;
    const dl = document.getElementById("stats");
    const pairs = [["Trades", st.trades], ["Win rate %", st.win_rate], ["Profit factor", st.profit_factor],
      ["Expectancy", money(st.expectancy)], ["Mean R", st.mean_r], ["Net P&L", money(st.net_pnl)],
      ["Max drawdown", money(st.max_drawdown) + " (" + st.max_drawdown_pct + "%)"],
      ["Max open drawdown", money(st.max_open_drawdown)], ["Deposits", money(st.deposits)],
      ["Withdrawals", money(st.withdrawals)], ["Time-weighted return %", st.time_weighted_return],
      ["Slippage (total)", money(st.total_slippage)], ["Slippage per trade", money(st.mean_slippage)]];
    dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", k), el("dd", v ?? "–")]));
    fill("pnl", data.pnl[period] || [], (p) => [el("td", p.period_start), signed(p.realized_pnl), el("td", p.trades),
      signed(p.net_flows), el("td", money(p.closing_equity))]);
    fill("instances", data.instances, (i) => [el("td", i.instance_id, i.stale ? "stale" : ""),
      el("td", i.hostname ?? "–"), el("td", i.is_leader ? "yes" : ""),
      el("td", i.status === "crashed" || i.status === "stopped" ? i.status : i.heartbeat_age_s + " s ago",
        i.stale ? "crashed" : "")]);
    list("refusals", data.refusals, (r) => time(r.received_at) + " " + r.source + " " + r.status + " " + r.reason);
    const anomalyTotal = Object.values(data.anomaly_counts || {}).reduce((a, b) => a + b, 0);
    document.getElementById("anomaly-count").textContent = anomalyTotal > data.anomalies.length
      ? `(${anomalyTotal}; the latest ${data.anomalies.length} shown)` : "";
    list("anomalies", data.anomalies, (a) => time(a.detected_at) + " " + a.kind + ": " + a.instrument + " " + a.signal_type + " " + a.position);
    fill("trades", data.trades, (t) => [el("td", time(t.exit_time)), el("td", t.position_id), el("td", t.layer),
      el("td", t.lots), el("td", t.entry_price), el("td", t.exit_price), signed(t.pnl), el("td", t.r_multiple ?? "–"),
      el("td", t.exit_reason ?? "–")]);
    list("capital-ledger", data.capital || [], (f) => time(f.recorded_at) + " " + f.kind + " ₹" + money(f.amount) +
      " → closed " + money(f.closed_equity) + " by " + f.recorded_by + (f.note ? " — " + f.note : ""));
    renderBroker(data.broker);
    const orders = data.orders || [];
    fill("orders", orders, (o) => [el("td", time(o.created_at)), el("td", o.client_order_id), el("td", o.symbol ?? o.instrument),
      el("td", o.side), el("td", o.quantity ?? "–"), el("td", o.state, "order-" + o.state),
      el("td", o.filled_quantity ? o.filled_quantity + " @ " + o.average_price : "–"), el("td", o.signal_price ?? "–"),
      el("td", o.slippage ?? "–"), el("td", o.broker_order_id ?? "–"), el("td", o.reason ?? "", "reason")]);
    const waiting = orders.filter((o) => ["needs_review", "rejected", "unknown"].includes(o.state));
    document.getElementById("orders-attention").textContent = waiting.length ? waiting.map((o) => o.client_order_id +
      " " + o.state + (o.state === "needs_review" ? ": look at the broker's order book, then pm-engine orders review" : "")
    ).join("; ") : "";
    drawCurve(data.curve);
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  async function refresh() {
    try {
      const answer = await fetch("/dashboard/data?range=" + range + "&points=600", {credentials: "same-origin"});
      if (answer.status === 401) { window.location.assign("/login"); return; }
      if (answer.ok) render(await answer.json());
      else document.getElementById("updated").textContent = "refresh failed (" + answer.status + ")";
    } catch (err) {
      document.getElementById("updated").textContent = "offline, retrying";
    }
  }

  async function post(url, body) {
    const answer = await fetch(url, {method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf}, body: JSON.stringify(body)});
    const data = await answer.json().catch(() => ({}));
    if (!answer.ok) window.alert("Refused: " + (data.error || answer.status));
    return answer.ok ? data : null;
  }

  document.querySelectorAll("[data-mode]").forEach((button) => button.addEventListener("click", async () => {
    const mode = button.dataset.mode;
    const label = {halted: "Pause all trading (exits too)", exits_only: "Allow exits only", active: "Resume trading"}[mode];
    if (!window.confirm(label + "?")) return;
    const reason = mode === "active" ? "" : window.prompt("Reason (recorded with your change):", "");
    if (mode !== "active" && !reason) return;
    if (await post("/control", {mode, reason})) await refresh();
  }));

  root.addEventListener("click", async (event) => {
    const target = event.target;
    if (!(target instanceof HTMLElement) || !target.dataset.position) return;
    const id = target.dataset.position;
    if (!window.confirm("Exit " + id + " now, at the last price?")) return;
    const reason = window.prompt("Reason (recorded as MANUAL: …):", "");
    if (!reason) return;
    const result = await post("/positions/" + encodeURIComponent(id) + "/exit", {reason});
    if (result) { window.alert(result.outcome + ": " + result.reason); await refresh(); }
  });

  // capital in and out: confirmed with the closed equity it leaves, posted as JSON with the CSRF token
  document.getElementById("capital-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    if (!form.reportValidity()) return;
    const kind = document.getElementById("capital-kind").value;
    const amount = document.getElementById("capital-amount").value.trim();
    const note = document.getElementById("capital-note").value.trim();
    const closed = last ? Number(last.status.closed_equity) : NaN;
    const after = closed + (kind === "deposit" ? 1 : -1) * Number(amount);
    const question = (kind === "deposit" ? "Deposit" : "Withdraw") + " ₹" + money(amount) + "?" +
      (Number.isFinite(after) ? " Closed equity " + money(closed) + " → " + money(after) + "." : "") +
      " Sizing uses it from the next signal.";
    if (!window.confirm(question)) return;
    const result = await post("/capital", {kind, amount, note});
    if (!result) return;
    document.getElementById("capital-result").textContent =
      result.kind + " of ₹" + money(result.amount) + " recorded; closed equity " + money(result.closed_equity);
    form.reset();
    await refresh();
  });

  document.querySelectorAll("[data-range]").forEach((button) => button.addEventListener("click", () => {
    range = button.dataset.range;
    document.querySelectorAll("[data-range]").forEach((b) => b.classList.toggle("active", b === button));
    refresh();
  }));
  document.querySelectorAll("[data-period]").forEach((button) => button.addEventListener("click", () => {
    period = button.dataset.period;
    document.querySelectorAll("[data-period]").forEach((b) => b.classList.toggle("active", b === button));
    if (last) render(last);
  }));

  refresh();
  window.setInterval(refresh, refreshMs);
})();

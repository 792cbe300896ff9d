// The recgpt inspector: builds each page from the JSON routes of the same server.
// Every value shown is a text node (titles and model output are data, never markup).
"use strict";

const main = document.getElementById("main");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const fmt = (x, digits = 3) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(1) + "%");
const badge = (text, cls) => el("span", { class: "badge " + (cls || text) }, text);
const userLink = (id) => el("a", { href: "/ui/users/" + encodeURIComponent(id) }, id);

// The API, with the key kept for this tab when the server asks for one.
const KEY = "recgpt-api-key";
async function api(path) {
  const headers = {};
  const key = sessionStorage.getItem(KEY);
  if (key) headers["x-api-key"] = key;
  const r = await fetch(path, { headers });
  let body;
  try {
    body = await r.json();
  } catch (_) {
    body = { error: { code: "internal", message: r.statusText } };
  }
  if (!r.ok) {
    const e = new Error(body.error ? body.error.message : r.statusText);
    e.code = body.error ? body.error.code : "internal";
    e.status = r.status;
    throw e;
  }
  return body;
}

function showError(e) {
  if (e.status === 401) {
    document.getElementById("key").hidden = false;
  }
  main.replaceChildren(
    el("section", { class: "error", id: "error" },
      el("h1", {}, String(e.status || ""), " ", el("code", { id: "error-code" }, e.code || "error")),
      el("p", { id: "error-message" }, e.message),
      el("p", {}, el("a", { href: "/ui/" }, "back to the users"))));
}

document.getElementById("key-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("key-input").value);
  location.reload();
});
document.getElementById("find").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const id = document.getElementById("find-user").value.trim();
  if (id) location.href = "/ui/users/" + encodeURIComponent(id);
});

// ---- /ui/ ------------------------------------------------------------------------------

async function homePage() {
  const [summary, users] = await Promise.all([api("/v1/summary"), api("/v1/users?limit=50")]);
  const cache = summary.explanation_cache;
  const failed = Object.entries(summary.failed_by_stage).map(([s, n]) => `${s} ${n}`).join(", ");
  const list = el("tbody", { id: "user-rows" });
  let shown = 0;
  const add = (rows) => {
    for (const u of rows) {
      list.append(el("tr", {}, el("td", {}, userLink(u.user_id)),
        el("td", { class: "num" }, u.events), el("td", {}, u.first.slice(0, 10)),
        el("td", {}, u.last.slice(0, 10))));
    }
    shown += rows.length;
    more.hidden = shown >= users.total;
  };
  const more = el("button", {
    id: "more",
    onclick: async () => add((await api(`/v1/users?limit=50&offset=${shown}`)).users),
  }, "more users");
  main.replaceChildren(
    el("h1", {}, "The batch job's results"),
    el("div", { class: "cards", id: "summary" },
      el("div", { class: "card" }, el("b", { id: "users-done" }, summary.users), "users done"),
      el("div", { class: "card" }, el("b", { id: "users-failed" }, summary.failed), "failed",
        failed ? el("div", { class: "muted" }, failed) : null),
      el("div", { class: "card" }, el("b", {}, summary.explanations), "cached explanations"),
      el("div", { class: "card" }, el("b", { id: "cache-reuse" }, cache ? pct(cache.reuse) : "–"),
        "explanation cache reuse",
        cache ? el("div", { class: "muted" },
          `${cache.pairs} lookups, ${cache.distinct} distinct; ${cache.model} model, ${cache.fallback} template`) : null)),
    el("h2", {}, "Models and prompt versions"),
    el("table", { id: "versions" },
      el("thead", {}, el("tr", {}, ["model", "interests prompt", "tags prompt", "as of", "users"].map((h) => el("th", {}, h)))),
      el("tbody", {}, summary.versions.map((v) => el("tr", {}, el("td", {}, v.model_id),
        el("td", {}, v.interests_prompt), el("td", {}, v.tags_prompt), el("td", {}, v.as_of),
        el("td", { class: "num" }, v.users))))),
    cache ? el("p", { class: "muted" }, `explanations looked up under ${cache.prompt_version}, model ${cache.model_id}`) : null,
    el("h2", {}, `Users with results (${users.total}), most active first`),
    el("table", { id: "users" },
      el("thead", {}, el("tr", {}, el("th", {}, "user"), el("th", { class: "num" }, "events"),
        el("th", {}, "first"), el("th", {}, "last"))),
      list),
    more);
  add(users.users);
}

// ---- /ui/users/{id} --------------------------------------------------------------------

async function userPage() {
  const id = decodeURIComponent(location.pathname.split("/").pop());
  const chain = await api("/v1/users/" + encodeURIComponent(id) + "/chain");
  document.title = `user ${id} · recgpt inspector`;

  // which interests cite each narrative item
  const citedBy = new Map();
  chain.interests.forEach((interest, i) => {
    for (const ev of interest.evidence) {
      if (!ev.narrative_text) continue;
      if (!citedBy.has(ev.narrative_text)) citedBy.set(ev.narrative_text, []);
      citedBy.get(ev.narrative_text).push(i);
    }
  });
  // An entry names an item whole, with its count ("name ×6"), or in a group after the words
  // it shares with the entry's first item ("red retrospot apron ×9, cup ×5"): mark each cited
  // name where it stands between the entry's start or ", " and its end, " ×" or ",".
  const markCited = (p, text) => {
    const spans = [];
    for (const [key, cited] of citedBy) {
      for (let at = text.indexOf(key); at >= 0; at = text.indexOf(key, at + 1)) {
        const end = at + key.length;
        const starts = at === 0 || text.startsWith(", ", at - 2);
        const ends = end === text.length || text.startsWith(" ×", end) || text.startsWith(",", end);
        if (starts && ends && !spans.some(([s, e]) => at < e && end > s)) {
          spans.push([at, end, cited]);
          break;
        }
      }
    }
    spans.sort((a, b) => a[0] - b[0]);
    let pos = 0;
    for (const [s, e, cited] of spans) {
      if (s > pos) p.append(text.slice(pos, s));
      p.append(el("mark", { class: "evidence", "data-interests": cited.join(" ") }, text.slice(s, e)));
      pos = e;
    }
    if (pos < text.length) p.append(text.slice(pos));
  };
  const narrative = el("div", { id: "narrative" });
  if (chain.narrative) {
    const lines = chain.narrative.text.split("\n").filter((l) => l.length > 0);
    for (const line of lines) {
      const bar = line.indexOf(" | ");
      if (bar < 0) {
        narrative.append(el("p", { class: "line muted" }, line));
        continue;
      }
      const items = line.slice(bar + 3).split("; ");
      const p = el("p", { class: "line" }, el("span", { class: "time" }, line.slice(0, bar)), " | ");
      items.forEach((text, n) => {
        if (n > 0) p.append("; ");
        markCited(p, text);
      });
      narrative.append(p);
    }
  } else {
    narrative.append(el("p", { class: "muted" }, "no narrative: this server cannot count tokens"));
  }

  const tagsOf = new Map(chain.interests.map((i) => [i.name, []]));
  const otherTags = [];
  for (const t of chain.tags) (tagsOf.get(t.interest) || otherTags).push(t);
  const tagChips = (tags) => el("div", { class: "tags" }, tags.map((t) =>
    el("span", { class: "tag " + t.source, title: `${t.source}${t.category ? " · " + t.category : ""}${t.rationale ? " · " + t.rationale : ""}` },
      t.tag, " ", el("small", {}, t.source))));

  const select = (i) => {
    const card = document.querySelector(`.interest[data-index="${i}"]`);
    const on = !card.classList.contains("active");
    document.querySelectorAll(".interest.active").forEach((c) => c.classList.remove("active"));
    document.querySelectorAll("mark.evidence.active").forEach((m) => m.classList.remove("active"));
    if (!on) return;
    card.classList.add("active");
    document.querySelectorAll("mark.evidence").forEach((m) => {
      if (m.dataset.interests.split(" ").includes(String(i))) m.classList.add("active");
    });
    const first = document.querySelector("mark.evidence.active");
    if (first) first.scrollIntoView({ block: "nearest" });
  };
  const interests = el("div", { id: "interests" }, chain.interests.map((interest, i) =>
    el("article", { class: "interest", "data-index": i, onclick: () => select(i) },
      el("h3", {}, interest.name, badge(interest.description_source)),
      el("p", {}, interest.description),
      interest.evidence.length ? el("ul", {}, interest.evidence.map((ev) =>
        el("li", {}, ev.title || ev.item_id, el("span", { class: "muted" }, ` (${ev.item_id})`)))) : null,
      tagChips(tagsOf.get(interest.name)))));
  if (otherTags.length) interests.append(el("article", { class: "interest" }, el("h3", {}, "tags of no kept interest"), tagChips(otherTags)));
  if (!chain.interests.length) interests.append(el("p", { class: "muted" }, "no interest was kept for this user"));

  const panel = el("div", { id: "explanation", hidden: true });
  const explain = async (r, row) => {
    document.querySelectorAll("tr.rec.open").forEach((t) => t.classList.remove("open"));
    row.classList.add("open");
    panel.hidden = false;
    panel.replaceChildren(el("p", { class: "muted" }, "loading the explanation…"));
    try {
      const e = await api(`/v1/explanations?user_id=${encodeURIComponent(chain.user_id)}&item_id=${encodeURIComponent(r.item_id)}`);
      panel.replaceChildren(
        el("h3", {}, r.title, el("span", { class: "muted" }, ` (${r.item_id})`)),
        el("p", {}, "interest: ", el("b", {}, e.interest), r.tag ? ` · tag: ${r.tag}` : "", ` · channel: ${r.channel}`),
        el("blockquote", { id: "explanation-text" }, e.explanation),
        el("p", {}, "written by: ", badge(e.source), e.cached ? " · cached" : " · generated now",
          r.judge ? el("span", {}, " · judge: ", badge(r.judge)) : el("span", { class: "muted" }, " · not judged")),
        r.rejected.length ? el("p", { class: "muted" }, "answers rejected before: " + r.rejected.join(", ")) : null);
    } catch (err) {
      panel.replaceChildren(el("p", {}, "no explanation: ", el("code", {}, err.code), " ", err.message));
    }
  };
  const recs = el("table", { id: "recommendations" },
    el("thead", {}, el("tr", {}, ["#", "item", "score", "channel", "tag", "interest", "explanation", "bought after"]
      .map((h) => el("th", {}, h)))),
    el("tbody", {}, chain.recommendations.map((r, n) => {
      const row = el("tr", { class: "rec", "data-item": r.item_id },
        el("td", { class: "num" }, n + 1),
        el("td", {}, r.title, el("div", { class: "muted" }, r.item_id + (r.category ? " · " + r.category : ""))),
        el("td", { class: "num" }, fmt(r.score, 4)),
        el("td", {}, r.channel),
        el("td", {}, r.tag || "–"),
        el("td", {}, r.interest || "–"),
        el("td", {}, r.explanation_source ? badge(r.explanation_source) : "–"),
        el("td", {}, r.bought_after ? badge("bought", "hit") : ""));
      row.addEventListener("click", () => explain(r, row));
      return row;
    })));

  const after = chain.after.length
    ? el("table", { id: "after" },
        el("thead", {}, el("tr", {}, ["first bought", "item", "times", "recommended"].map((h) => el("th", {}, h)))),
        el("tbody", {}, chain.after.map((p) => el("tr", {}, el("td", {}, p.first.slice(0, 10)),
          el("td", {}, p.title, el("span", { class: "muted" }, ` (${p.item_id})`)),
          el("td", { class: "num" }, p.times), el("td", {}, p.recommended ? badge("recommended", "hit") : "")))))
    : el("p", { class: "muted", id: "after" }, `the store has no purchase of this user after ${chain.as_of}`);

  const n = chain.narrative;
  main.replaceChildren(
    el("h1", {}, "User ", el("span", { id: "user-id" }, chain.user_id)),
    el("p", { class: "muted" }, `as of ${chain.as_of} · model ${chain.model_id} · prompts ${chain.interests_prompt}, ${chain.tags_prompt}`),
    el("div", { class: "columns" },
      el("section", {},
        el("h2", {}, "Narrative"),
        n ? el("p", { class: "muted" }, `${n.tokens} of ${n.budget} tokens · ${n.events_kept} of ${n.events} events · highlighted: the interests' evidence (click an interest)`) : null,
        narrative),
      el("section", {}, el("h2", {}, `Interests (${chain.interests.length}) and their tags`), interests)),
    el("h2", {}, `Recommendations (${chain.recommendations.length}) — click one for its explanation`),
    panel,
    recs,
    el("h2", {}, `Bought after ${chain.as_of}: ${chain.after_items} items, ${chain.after_recommended} of them recommended`),
    after);
}

// ---- /ui/eval ---------------------------------------------------------------------------

const COLORS = ["#2457a6", "#c0392b", "#1f6f43", "#9a5b00", "#7b3fa0", "#00838f", "#555"];

function chart(id, title, report, field) {
  const W = 560, H = 320, L = 48, R = 16, T = 28, B = 36;
  const ks = report.ks;
  const kmax = Math.max(...ks);
  const vmax = Math.max(1e-9, ...report.methods.flatMap((m) => m.at.map((a) => a[field])));
  const x = (k) => L + (k / kmax) * (W - L - R);
  const y = (v) => H - B - (v / vmax) * (H - T - B);
  const NS = "http://www.w3.org/2000/svg";
  const s = (tag, attrs, text) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  };
  const svg = s("svg", { id, class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  svg.append(s("title", {}, title), s("text", { x: L, y: 16 }, title));
  svg.append(s("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, stroke: "#999" }),
    s("line", { x1: L, y1: T, x2: L, y2: H - B, stroke: "#999" }));
  for (const k of ks) svg.append(s("text", { x: x(k) - 6, y: H - B + 16 }, String(k)));
  for (let i = 0; i <= 4; i++) {
    const v = (vmax * i) / 4;
    svg.append(s("text", { x: 4, y: y(v) + 4 }, v.toFixed(3)),
      s("line", { x1: L, y1: y(v), x2: W - R, y2: y(v), stroke: "#eee" }));
  }
  svg.append(s("text", { x: W / 2, y: H - 6 }, "K"));
  report.methods.forEach((m, i) => {
    const points = m.at.map((a) => `${x(a.k).toFixed(1)},${y(a[field]).toFixed(1)}`).join(" ");
    const line = s("polyline", { points, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2, "data-method": m.method });
    line.append(s("title", {}, m.method));
    svg.append(line);
  });
  return svg;
}

function retrievalSection(out) {
  const r = out.report;
  const rows = [];
  for (const m of r.methods) {
    for (const a of m.at) {
      rows.push(el("tr", {}, el("td", {}, m.method), el("td", { class: "num" }, a.k),
        el("td", { class: "num" }, fmt(a.recall, 4)), el("td", { class: "num" }, fmt(a.ndcg, 4)),
        el("td", { class: "num" }, fmt(a.hr)), el("td", { class: "num" }, fmt(a.recall_new, 4)),
        el("td", { class: "num" }, fmt(a.ndcg_new, 4)), el("td", { class: "num" }, fmt(a.coverage)),
        el("td", { class: "num" }, fmt(a.category_entropy, 2))));
    }
  }
  return el("section", { id: "retrieval" },
    el("h2", {}, `Retrieval at split ${r.split}`),
    el("p", { class: "muted" }, `${r.users} users on both sides (${r.users_with_new_items} with items new to them), ${r.items} items, ${r.categories} categories; three-tower tags: ${r.tags_source}; seed ${r.seed} · ${out.file}`),
    el("div", { class: "legend" }, r.methods.map((m, i) =>
      el("span", {}, el("i", { style: `background:${COLORS[i % COLORS.length]}` }), m.method))),
    el("div", { class: "cards" },
      chart("chart-recall", "Recall@K", r, "recall"),
      chart("chart-recall-new", "Recall-new@K (items new to the user)", r, "recall_new")),
    el("table", { id: "methods" },
      el("thead", {}, el("tr", {}, ["method", "K", "Recall", "NDCG", "HR", "Recall-new", "NDCG-new", "coverage", "cat. entropy"]
        .map((h, i) => el("th", { class: i ? "num" : null }, h)))),
      el("tbody", {}, rows)));
}

const interval = (iv) => (iv ? `${iv.diff >= 0 ? "+" : ""}${fmt(iv.diff, 4)} [${fmt(iv.low, 4)}, ${fmt(iv.high, 4)}]` : "–");

function llmSection(out) {
  const r = out.report;
  const parts = [
    el("h2", {}, `LLM quality loop at split ${r.split}`),
    el("p", { class: "muted" }, `${r.users} sampled users of ${r.eligible_users}; model ${r.model_id}; prompts ${r.prompt_versions.join(", ")}; tag hit@${r.k}, HR@${r.n} · ${out.file}`),
    el("table", { id: "llm-methods" },
      el("thead", {}, el("tr", {}, ["tags from", "users", "tags/user", "tag hit rate (p10 · median)", "users without a hit", "hit rate on new items", `HR@${r.n}`]
        .map((h) => el("th", {}, h)))),
      el("tbody", {}, r.methods.map((m) => el("tr", {}, el("td", {}, m.method), el("td", { class: "num" }, m.users),
        el("td", { class: "num" }, fmt(m.tags_per_user, 1)),
        el("td", { class: "num" }, `${fmt(m.hit_rate.mean)} (${fmt(m.hit_rate.p10)} · ${fmt(m.hit_rate.median)})`),
        el("td", { class: "num" }, m.users_without_hit), el("td", { class: "num" }, fmt(m.hit_rate_new)),
        el("td", { class: "num" }, fmt(m.hr_at_n)))))),
  ];
  if (r.channels) {
    const c = r.channels;
    parts.push(
      el("h3", {}, `Channels on the same ${c.users} users: difference from CF with paired bootstrap 95% intervals`),
      el("table", { id: "channels" },
        el("thead", {}, el("tr", {}, ["channel", "Recall@20", "Recall@50", "Recall-new@50", "NDCG@10", "users at 0", "Recall@50 − CF", "Recall-new@50 − CF", "NDCG@10 − CF"]
          .map((h) => el("th", {}, h)))),
        el("tbody", {}, c.rows.map((row) => el("tr", {}, el("td", {}, row.method),
          el("td", { class: "num" }, fmt(row.recall_20, 4)), el("td", { class: "num" }, fmt(row.recall_50, 4)),
          el("td", { class: "num" }, fmt(row.recall_new_50, 4)), el("td", { class: "num" }, fmt(row.ndcg_10, 4)),
          el("td", { class: "num" }, row.users_at_zero_50),
          el("td", { class: "num" }, row.vs_cf ? interval(row.vs_cf.recall_50) : "–"),
          el("td", { class: "num" }, row.vs_cf ? interval(row.vs_cf.recall_new_50) : "–"),
          el("td", { class: "num" }, row.vs_cf ? interval(row.vs_cf.ndcg_10) : "–"))))));
  }
  return el("section", { id: "llm" }, parts);
}

async function evalPage() {
  const e = await api("/v1/eval");
  main.replaceChildren(el("h1", {}, "Evaluation"));
  if (!e.retrieval && !e.llm) {
    main.append(el("p", { class: "muted", id: "no-reports" }, "no report yet: run `recgpt eval --split DATE` (and `recgpt eval llm …`) on this data home"));
  }
  if (e.retrieval) main.append(retrievalSection(e.retrieval));
  if (e.llm) main.append(llmSection(e.llm));
}

const pages = { home: homePage, user: userPage, eval: evalPage };
const run = pages[document.body.dataset.page];
if (run) run().catch(showError);

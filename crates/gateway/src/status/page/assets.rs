//! The page's inline style and script (no external assets: the page works offline in a control
//! room). The script only filters rows and refreshes the data in place; without it the page is
//! whole (every row, `<details>` to expand) and reloads itself through a `<noscript>` refresh.

/// Compact rows for 100 beamlines on one screen; attention rows marked on the left edge.
pub const STYLE: &str = "\
*{box-sizing:border-box}\
body{font:13px/1.35 system-ui,sans-serif;margin:0;padding:.8em 1.2em;color:#1d1d1f;background:#fafafa}\
h1{font-size:1.25em;margin:0 .6em 0 0;display:inline}\
header p{display:inline;margin:0}\
.muted{color:#6b6b6b}\
.banner{padding:.5em .8em;margin:.6em 0;border-radius:4px;font-weight:600}\
.banner.halt{background:#b00020;color:#fff}\
.banner.warn{background:#fff3cd;color:#5c4400;border:1px solid #e0c36c}\
.totals{display:flex;flex-wrap:wrap;gap:.5em;margin:.7em 0}\
.tile{background:#fff;border:1px solid #ddd;border-radius:4px;padding:.3em .8em;min-width:8.5em}\
.tile b{display:block;font-size:1.45em;font-variant-numeric:tabular-nums}\
.tile span{color:#6b6b6b;font-size:.9em}\
.tile.alert{border-color:#b00020;background:#fdecee}.tile.alert b{color:#b00020}\
.tile.lockd{border-color:#8a5a00;background:#fff6e0}.tile.lockd b{color:#8a5a00}\
form.filter{margin:.4em 0 .6em}\
form.filter input{font:inherit;padding:.3em .5em;width:26em;border:1px solid #bbb;border-radius:4px}\
form.filter button{font:inherit;padding:.3em .7em}\
table{border-collapse:collapse;width:100%;background:#fff;table-layout:fixed}\
th,td{border-bottom:1px solid #e6e6e6;padding:.18em .45em;text-align:left;vertical-align:top;\
overflow:hidden;text-overflow:ellipsis}\
thead th{background:#f0f0f0;position:sticky;top:0;z-index:1;font-size:.92em}\
tr.group th{background:#e9e9ee;font-size:.9em;padding:.3em .45em}\
tr.row:nth-child(even){background:#fbfbfb}\
tr.att td:first-child{box-shadow:inset 4px 0 #b00020}\
td.id{font-weight:700;white-space:nowrap}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
td.st{white-space:nowrap}\
.b{display:inline-block;font-size:.78em;font-weight:700;text-transform:uppercase;\
letter-spacing:.03em;padding:0 .4em;border-radius:3px;margin-right:.25em}\
.b.halted{background:#b00020;color:#fff}.b.locked{background:#8a5a00;color:#fff}\
.b.unhealthy,.b.unroutable{border:1px solid #b00020;color:#b00020}\
.b.erroring{background:#ffe0cc;color:#8a2b00}.b.ok{color:#176f2c;border:1px solid #9ccaa5}\
.b.act{background:#f3e3e3;color:#8a1a1a}.b.ro{background:#e4eef7;color:#1f4f7a}\
.why{color:#444;font-size:.92em}\
.ok{color:#176f2c}.bad{color:#b00020}\
details summary{cursor:pointer;white-space:nowrap}\
details ul{margin:.2em 0;padding-left:1.1em;white-space:normal}\
td details[open]>ul{position:absolute;right:1.5em;width:46em;max-width:90vw;z-index:2;\
background:#fff;border:1px solid #bbb;border-radius:4px;box-shadow:0 3px 10px #0003;\
padding:.5em .8em .5em 2em}\
details li{margin:.1em 0}\
code{font-size:.95em}\
footer{margin:.8em 0}";

/// Filters rows as the user types (the same rule as `view::matches`: every word in the row's
/// `data-search`), keeps the filter in `?filter=` (so a reload or a shared link keeps it), and
/// every few seconds fetches the page and swaps `#live` in place, keeping open `<details>`.
pub const SCRIPT: &str = r#"(function(){
var form=document.getElementById('filter-form'),box=document.getElementById('filter');
function apply(){
 var words=box.value.toLowerCase().split(/\s+/).filter(Boolean);
 var rows=document.querySelectorAll('#rows tr[data-search]'),shown=0;
 for(var i=0;i<rows.length;i++){
  var text=rows[i].getAttribute('data-search');
  var hit=words.every(function(w){return text.indexOf(w)>=0;});
  rows[i].hidden=!hit;if(hit)shown++;
 }
 document.querySelectorAll('#rows tr.group').forEach(function(g){
  var n=g.nextElementSibling,any=false;
  for(;n&&!n.classList.contains('group');n=n.nextElementSibling)if(!n.hidden)any=true;
  g.hidden=!any;
 });
 var out=document.getElementById('shown');
 if(out)out.textContent=words.length?('showing '+shown+' of '+rows.length):'';
}
function remember(){
 var u=new URL(location.href);
 if(box.value)u.searchParams.set('filter',box.value);else u.searchParams.delete('filter');
 history.replaceState(null,'',u);
}
box.addEventListener('input',function(){apply();remember();});
form.addEventListener('submit',function(e){e.preventDefault();apply();remember();});
var note=document.getElementById('refresh-note');
function refresh(){
 fetch(location.href,{cache:'no-store'}).then(function(r){
  if(!r.ok)throw new Error('HTTP '+r.status);return r.text();
 }).then(function(html){
  var doc=new DOMParser().parseFromString(html,'text/html');
  var live=document.getElementById('live'),fresh=doc.getElementById('live');
  if(!live||!fresh)throw new Error('no data in the answer');
  var open={};
  live.querySelectorAll('details[open]').forEach(function(d){open[d.getAttribute('data-key')]=1;});
  fresh=document.importNode(fresh,true);
  fresh.querySelectorAll('details').forEach(function(d){if(open[d.getAttribute('data-key')])d.open=true;});
  live.replaceWith(fresh);document.title=doc.title;apply();
  note.textContent='updated '+new Date().toLocaleTimeString();note.className='muted';
 }).catch(function(e){
  note.textContent='refresh failed ('+e.message+'): the data below is stale';note.className='bad';
 }).finally(function(){setTimeout(refresh,REFRESH_MS);});
}
setTimeout(refresh,REFRESH_MS);
apply();
})();"#;

#include "http_server.h"

#include <spdlog/spdlog.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <optional>
#include <string_view>

#include "connection_slots.h"

namespace starling::node {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

std::string ErrorBody(const std::string& message) { return "{\"error\":\"" + message + "\"}\n"; }

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decoding of a query part ('+' is a space); a bad escape stays as
// typed, for the handler to refuse by name.
std::string Unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() && HexDigit(s[i + 1]) >= 0 && HexDigit(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexDigit(s[i + 1]) * 16 + HexDigit(s[i + 2])));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(std::string_view q) {
  std::map<std::string, std::string> out;
  while (!q.empty()) {
    const size_t amp = q.find('&');
    std::string_view part = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view() : q.substr(amp + 1);
    if (part.empty()) continue;
    const size_t eq = part.find('=');
    out[Unescape(part.substr(0, eq))] = eq == std::string_view::npos ? "" : Unescape(part.substr(eq + 1));
  }
  return out;
}

template <typename Request>
std::string Header(const Request& req, const char* name) {
  auto it = req.find(name);
  return it == req.end() ? std::string() : std::string(it->value().data(), it->value().size());
}

}  // namespace

struct HttpServer::Impl {
  class Conn;

  Impl(Handler h, Limits l)
      : handler(std::move(h)),
        limits(l),
        slots(std::make_shared<ConnectionSlots>("http", l.max_connections, l.per_source)),
        acceptor(*ioc),
        backoff(*ioc) {}

  void Accept();
  void Admit(tcp::socket socket);
  void CloseAll();

  Handler handler;
  const Limits limits;
  std::shared_ptr<ConnectionSlots> slots;
  // Shared with every answer in flight: a handler that answers after Stop
  // posts into a stopped context, never a destroyed one.
  std::shared_ptr<net::io_context> ioc = std::make_shared<net::io_context>(1);
  tcp::acceptor acceptor;
  net::steady_timer backoff;  // between accepts when descriptors run out
  bool loopback = false;
  std::atomic<uint64_t> accepted{0};  // read from any thread by stats()
  std::atomic<size_t> streams{0};
};

// One client connection; lives as long as an operation on it is pending.
// It touches the server only from handlers on the io thread, which never run
// once the server has stopped, so it may outlive the server's other state.
class HttpServer::Impl::Conn : public std::enable_shared_from_this<Conn> {
 public:
  Conn(Impl* server, tcp::socket socket)
      : server_(server),
        limits_(server->limits),
        slots_(server->slots),
        stream_(std::move(socket)),
        buffer_(limits_.header_bytes + limits_.body_bytes),
        deadline_(stream_.get_executor()) {}
  ~Conn() { slots_->Release(id_); }

  void Start(uint64_t id) {
    id_ = id;
    ReadRequest();
  }
  void Close() {
    if (closed_) return;
    closed_ = true;
    if (events_) {
      events_->open_ = false;
      --server_->streams;
    }
    beast::error_code ec;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    stream_.close();
  }

 private:
  // The open side of a streamed reply, held by whoever sends on it; the
  // chunks go through the io thread, which owns the socket.
  class Events : public HttpStream {
   public:
    Events(std::weak_ptr<Conn> conn, std::shared_ptr<net::io_context> ioc, size_t limit)
        : conn_(std::move(conn)), ioc_(std::move(ioc)), limit_(limit) {}
    bool Send(std::string chunk) override {
      if (!open_) return false;
      if (queued_.fetch_add(chunk.size()) + chunk.size() > limit_) {
        open_ = false;
        net::post(*ioc_, [conn = conn_] {
          if (auto c = conn.lock()) {
            c->slots_->Count("slow_stream");
            c->Close();
          }
        });
        return false;
      }
      net::post(*ioc_, [conn = conn_, chunk = std::move(chunk)]() mutable {
        if (auto c = conn.lock()) c->Queue(std::move(chunk));
      });
      return true;
    }
    bool open() const override { return open_; }

    std::atomic<bool> open_{true};
    std::atomic<size_t> queued_{0};

   private:
    std::weak_ptr<Conn> conn_;
    std::shared_ptr<net::io_context> ioc_;
    const size_t limit_;
  };

  void StartStream(HttpReply r, unsigned version) {
    if (server_->streams.load() >= limits_.max_streams) {
      slots_->Count("streams_full");
      return Send({503, "application/json", ErrorBody("too many open event streams")}, false, false, version);
    }
    ++server_->streams;
    events_ = std::make_shared<Events>(weak_from_this(), server_->ioc, limits_.stream_queue_bytes);
    auto res = std::make_shared<http::response<http::empty_body>>(http::status::ok, version);
    Fill(*res, r.content_type, false, false, r.headers);
    res->set(http::field::cache_control, "no-store");
    auto sr = std::make_shared<http::response_serializer<http::empty_body>>(*res);
    stream_.expires_after(limits_.write_deadline);
    http::async_write_header(stream_, *sr, [self = shared_from_this(), res, sr](beast::error_code ec, size_t) {
      self->stream_.expires_never();
      if (self->closed_) return;
      if (ec) return self->Close();
      self->WatchForClose();
    });
    if (!r.body.empty()) Queue(std::move(r.body));
    std::shared_ptr<HttpStream> events = events_;
    r.on_stream(std::move(events));
  }

  // The client sends nothing more on a stream; a read ends when it leaves.
  void WatchForClose() {
    stream_.socket().async_read_some(net::buffer(watch_), [self = shared_from_this()](beast::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec) return self->Close();
      self->WatchForClose();
    });
  }

  void Queue(std::string chunk) {
    if (closed_) return;
    out_.push_back(std::move(chunk));
    if (out_.size() == 1) WriteQueued();
  }

  void WriteQueued() {
    stream_.expires_after(limits_.write_deadline);
    net::async_write(stream_, net::buffer(out_.front()), [self = shared_from_this()](beast::error_code ec, size_t n) {
      self->stream_.expires_never();
      if (self->closed_) return;
      if (ec) {
        if (ec == beast::error::timeout) self->slots_->Count("write_timeout");
        return self->Close();
      }
      self->events_->queued_ -= n;
      self->out_.pop_front();
      if (!self->out_.empty()) self->WriteQueued();
    });
  }

  void ReadRequest() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(limits_.header_bytes));
    parser_->body_limit(limits_.body_bytes);
    slots_->Waiting(id_, true);
    stream_.expires_after(limits_.request_deadline);
    http::async_read(stream_, buffer_, *parser_,
                     [self = shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    slots_->Waiting(id_, false);
    if (closed_) return;
    if (ec == beast::error::timeout) {
      // Nothing of a next request is an idle client; part of one, a slow one.
      slots_->Count(parser_->got_some() || buffer_.size() > 0 ? "timeout" : "idle");
      return;
    }
    if (ec == http::error::header_limit) {
      slots_->Count("too_large");
      return Send({431, "application/json", ErrorBody("request headers over " + std::to_string(limits_.header_bytes) + " bytes")}, false, false, 11);
    }
    if (ec == http::error::body_limit) {
      slots_->Count("too_large");
      return Send({413, "application/json", ErrorBody("request body over " + std::to_string(limits_.body_bytes) + " bytes")}, false, false, 11);
    }
    // The client went away (mid-request too): nothing to answer or count.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message || ec == net::error::eof ||
        ec == net::error::connection_reset || ec == net::error::operation_aborted)
      return;
    if (ec) {
      if (ec.category() == http::make_error_code(http::error::bad_target).category()) {
        slots_->Count("malformed");
        return Send({400, "application/json", ErrorBody("malformed request")}, false, false, 11);
      }
      return;
    }
    Handle(parser_->release());
  }

  void Handle(http::request<http::string_body> req) {
    ++served_;
    const bool keep = req.keep_alive() && served_ < limits_.requests_per_connection;
    const unsigned version = req.version();
    const bool head = req.method() == http::verb::head;
    if (req.method() != http::verb::get && req.method() != http::verb::post && !head)
      return Send({405, "application/json", ErrorBody("only GET, HEAD and POST")}, keep, false, version, true);
    // A page in the operator's browser can reach a loopback port by making
    // its own name resolve to 127.0.0.1 (DNS rebinding); its requests then
    // carry that name as Host. On loopback only loopback names are served.
    if (server_->loopback) {
      auto host = req.find(http::field::host);
      if (host != req.end() && !IsLoopbackHost(HostOfHostHeader(std::string_view(host->value().data(), host->value().size()))))
        return Send({403, "application/json",
                     ErrorBody("this node serves HTTP on a loopback address, to loopback names only: use "
                               "127.0.0.1, [::1] or localhost in the URL")},
                    keep, head, version);
    }
    HttpRequest request;
    request.method = std::string(req.method_string());
    std::string_view target(req.target().data(), req.target().size());
    const size_t q = target.find('?');
    request.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request.query = ParseQuery(target.substr(q + 1));
    request.body = std::move(req.body());
    request.content_type = Header(req, "Content-Type");
    request.host = Header(req, "Host");
    request.origin = Header(req, "Origin");
    request.token = Header(req, "X-Starling-Token");

    auto answered = std::make_shared<std::atomic<bool>>(false);
    deadline_.expires_after(limits_.handler_deadline);
    deadline_.async_wait([self = shared_from_this(), answered, keep, head, version](beast::error_code ec) {
      if (ec || self->closed_ || answered->exchange(true)) return;
      self->Send({503, "application/json", ErrorBody("the daemon did not answer in time")}, keep, head, version);
    });
    std::weak_ptr<Conn> weak = shared_from_this();
    server_->handler(std::move(request), [weak, ioc = server_->ioc, answered, keep, head, version](HttpReply r) {
      net::post(*ioc, [weak, answered, keep, head, version, r = std::move(r)]() mutable {
        auto self = weak.lock();
        if (!self || self->closed_ || answered->exchange(true)) return;
        self->deadline_.cancel();
        self->Send(std::move(r), keep, head, version);
      });
    });
  }

  void Send(HttpReply r, bool keep, bool head, unsigned version, bool allow = false) {
    if (r.on_stream && r.status == 200 && !head) return StartStream(std::move(r), version);
    const auto status = static_cast<http::status>(r.status);
    if (head) {
      auto res = std::make_shared<http::response<http::empty_body>>(status, version);
      Fill(*res, r.content_type, keep, allow, r.headers);
      res->content_length(r.body.size());
      return Write(res, keep);
    }
    auto res = std::make_shared<http::response<http::string_body>>(status, version);
    Fill(*res, r.content_type, keep, allow, r.headers);
    res->body() = std::move(r.body);
    res->prepare_payload();
    Write(res, keep);
  }

  template <typename Response>
  static void Fill(Response& res, const std::string& content_type, bool keep, bool allow,
                   const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    res.set(http::field::server, "starlingd");
    res.set(http::field::content_type, content_type);
    // Nothing served here is to be framed or sniffed into another type.
    res.set("X-Content-Type-Options", "nosniff");
    res.set("X-Frame-Options", "DENY");
    for (const auto& [name, value] : headers) res.set(name, value);
    if (allow) res.set(http::field::allow, "GET, HEAD, POST");
    res.keep_alive(keep);
  }

  template <typename Response>
  void Write(std::shared_ptr<Response> res, bool keep) {
    stream_.expires_after(limits_.write_deadline);
    http::async_write(stream_, *res, [self = shared_from_this(), res, keep](beast::error_code ec, size_t) {
      if (self->closed_) return;
      if (ec == beast::error::timeout) return self->slots_->Count("write_timeout");
      if (ec) return;
      if (!keep) {
        beast::error_code ignored;
        self->stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
        return;
      }
      self->ReadRequest();
    });
  }

  Impl* server_;
  const Limits limits_;
  std::shared_ptr<ConnectionSlots> slots_;  // shared: a connection may outlive the server's other state
  uint64_t id_ = 0;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;  // its limit bounds what one client can make us hold
  std::optional<http::request_parser<http::string_body>> parser_;
  net::steady_timer deadline_;
  size_t served_ = 0;
  bool closed_ = false;
  std::shared_ptr<Events> events_;  // set once the reply is a stream
  std::deque<std::string> out_;     // its chunks not written yet
  char watch_[512];
};

void HttpServer::Impl::Accept() {
  acceptor.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec == net::error::operation_aborted || !acceptor.is_open()) return;
    if (!ec) {
      Admit(std::move(socket));
      return Accept();
    }
    // Out of descriptors (or another passing error): wait a little rather
    // than spin on a listener that stays readable.
    slots->Count("full");
    backoff.expires_after(std::chrono::milliseconds(100));
    backoff.async_wait([this](beast::error_code e) {
      if (!e) Accept();
    });
  });
}

void HttpServer::Impl::Admit(tcp::socket socket) {
  ++accepted;
  beast::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const std::string source = ec || peer.address().is_loopback() ? "" : peer.address().to_string();
  auto c = std::make_shared<Conn>(this, std::move(socket));
  const uint64_t id = slots->Admit(
      [weak = std::weak_ptr<Conn>(c)] {
        if (auto conn = weak.lock()) conn->Close();
      },
      source);
  if (id == 0) return c->Close();
  c->Start(id);
}

void HttpServer::Impl::CloseAll() {
  beast::error_code ignored;
  acceptor.close(ignored);
  backoff.cancel();
  slots->CloseAll();
}

HttpServer::HttpServer(Handler handler, Limits limits)
    : impl_(std::make_shared<Impl>(std::move(handler), limits)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Listen(const HostPort& at) {
  const std::string where = FormatHostPort(at.host, at.port);
  impl_->loopback = IsLoopbackHost(at.host);
  beast::error_code ec;
  tcp::resolver resolver(*impl_->ioc);
  auto found = resolver.resolve(at.host, std::to_string(at.port), tcp::resolver::numeric_service, ec);
  if (ec || found.empty())
    return Status::IoError("--http " + where + ": cannot bind (not an address of this host: " + ec.message() + ")");
  const tcp::endpoint endpoint = found.begin()->endpoint();
  tcp::acceptor& a = impl_->acceptor;
  a.open(endpoint.protocol(), ec);
  // SO_REUSEADDR lets a restart bind while old connections sit in
  // TIME_WAIT; never SO_REUSEPORT, which would let a second daemon share a
  // busy port and answer half the requests as the wrong node.
  if (!ec) a.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) a.bind(endpoint, ec);
  if (!ec) a.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    a.close();
    return Status::IoError("--http " + where + ": cannot bind (" + ec.message() + ")");
  }
  port_ = a.local_endpoint().port();
  return Status::Ok();
}

void HttpServer::Start() {
  if (thread_.joinable() || !impl_->acceptor.is_open()) return;
  impl_->Accept();
  thread_ = std::thread([impl = impl_] {
    for (;;) {
      try {
        impl->ioc->run();
        return;
      } catch (const std::exception& e) {
        spdlog::error("http: {} (serving on)", e.what());
      }
    }
  });
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  net::post(*impl_->ioc, [impl = impl_.get()] {
    impl->CloseAll();
    impl->ioc->stop();
  });
  thread_.join();
}

HttpServer::Stats HttpServer::stats() const {
  Stats s;
  s.accepted = impl_->accepted.load();
  s.open = impl_->slots->open();
  s.streams = impl_->streams.load();
  s.refused = impl_->slots->refused();
  return s;
}

}  // namespace starling::node
